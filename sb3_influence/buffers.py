"""Rollout buffers whose ``get()`` yields only the kept records, so PPO's own ``train()`` runs unchanged."""

from collections.abc import Generator
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples


class FilterMixin:
    """
    Adds a keep mask to a rollout buffer.

    ``keep_mask`` is ``None`` (keep all: ``get()`` is exactly the parent's) or a boolean array of shape
    ``(n_steps, n_envs)``. With a mask, ``get()`` draws the same ``np.random.permutation`` as SB3's
    buffer (so the global RNG advances identically), keeps the kept indices in that shuffled order and
    yields minibatches of ``batch_size`` (the last one may be partial, as in SB3). ``reset()`` clears the mask.
    """

    keep_mask: np.ndarray | None = None
    buffer_size: int
    n_envs: int
    generator_ready: bool
    observations: Any

    def set_keep_mask(self, keep_mask: np.ndarray | None) -> None:
        """
        Set which records the next ``get()`` calls yield.

        :param keep_mask: Boolean array ``(n_steps, n_envs)``, or ``None`` to keep every record.
        """
        if keep_mask is not None:
            keep_mask = np.asarray(keep_mask)
            if keep_mask.shape != (self.buffer_size, self.n_envs) or keep_mask.dtype != np.bool_:
                raise ValueError(
                    f"keep_mask must be a boolean array of shape {(self.buffer_size, self.n_envs)}, "
                    f"got {keep_mask.dtype} {keep_mask.shape}"
                )
            if not keep_mask.any():
                raise ValueError("keep_mask must keep at least one record")
        self.keep_mask = keep_mask

    def reset(self) -> None:
        self.keep_mask = None
        super().reset()  # type: ignore[misc]

    def _flatten(self) -> None:
        # The same preparation as SB3's get(), without drawing a permutation.
        if self.generator_ready:
            return
        swap = RolloutBuffer.swap_and_flatten
        if isinstance(self.observations, dict):
            self.observations = {key: swap(obs) for key, obs in self.observations.items()}
        else:
            self.observations = swap(self.observations)
        for name in ("actions", "values", "log_probs", "advantages", "returns"):
            setattr(self, name, swap(getattr(self, name)))
        self.generator_ready = True

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        if self.keep_mask is None:
            yield from super().get(batch_size)  # type: ignore[misc]
            return
        n = self.buffer_size * self.n_envs
        indices = np.random.permutation(n)
        self._flatten()
        # swap_and_flatten puts record (step, env) at flat index env * n_steps + step
        kept_flat = self.keep_mask.swapaxes(0, 1).reshape(-1)
        indices = indices[kept_flat[indices]]
        batch_size = len(indices) if batch_size is None else batch_size
        for start in range(0, len(indices), batch_size):
            yield self._get_samples(indices[start : start + batch_size])  # type: ignore[attr-defined]


class FilteredRolloutBuffer(FilterMixin, RolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.RolloutBuffer` whose ``get()`` yields only kept records."""

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        return super().get(batch_size)


class FilteredDictRolloutBuffer(FilterMixin, DictRolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` whose ``get()`` yields only kept records."""

    def get(self, batch_size: int | None = None) -> Generator[DictRolloutBufferSamples, None, None]:  # type: ignore[override]
        return super().get(batch_size)
