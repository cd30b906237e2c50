"""
Rollout buffers whose ``get()`` yields only the kept records, so the parent algorithm's own ``train()`` runs unchanged.

Two mechanisms, one per family of buffers:

- :class:`FilterMixin` (SB3's, and sb3-contrib's maskable buffers): ``get()`` lets the parent's own ``get()`` draw
  its permutation and flatten its own fields, then yields minibatches of the kept records in that shuffled order.
- :class:`RecurrentFilterMixin` (sb3-contrib's recurrent buffers): minibatches are sequences, so records are not
  removed but masked: the keep mask is folded into the samples' ``mask``, which ``RecurrentPPO.train()`` applies to
  every loss term and to the advantage normalisation.
"""

from collections.abc import Generator
from typing import Any

import numpy as np
import torch as th
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples


class _KeepMask:
    """The keep mask shared by both mechanisms."""

    keep_mask: np.ndarray | None = None
    buffer_size: int
    n_envs: int

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

    def _kept_flat(self) -> np.ndarray:
        """The keep mask in the order of ``swap_and_flatten``: record ``(step, env)`` at ``env * n_steps + step``."""
        assert self.keep_mask is not None
        return self.keep_mask.swapaxes(0, 1).reshape(-1)


class FilterMixin(_KeepMask):
    """
    Adds a keep mask to a rollout buffer whose ``get()`` draws ``np.random.permutation`` of all records first (SB3's
    ``RolloutBuffer`` and ``DictRolloutBuffer``, sb3-contrib's maskable buffers).

    ``keep_mask`` is ``None`` (keep all: ``get()`` is exactly the parent's) or a boolean array of shape
    ``(n_steps, n_envs)``. With a mask, ``get()`` runs the parent's ``get()`` up to its first minibatch (so the
    parent draws its own permutation, advancing the global RNG exactly as it would, and flattens its own fields,
    e.g. the action masks), redraws the same permutation from the saved RNG state, keeps the kept indices in that
    shuffled order and yields the parent's ``_get_samples`` of minibatches of ``batch_size`` (the last one may be
    partial, as in SB3). ``reset()`` clears the mask.
    """

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        if self.keep_mask is None:
            yield from super().get(batch_size)  # type: ignore[misc]
            return
        n = self.buffer_size * self.n_envs
        before = np.random.get_state()
        parent = super().get(batch_size)  # type: ignore[misc]
        next(parent)  # the parent draws its permutation and flattens its fields
        parent.close()
        after = np.random.get_state()
        np.random.set_state(before)
        indices = np.random.permutation(n)
        if not _same_rng_state(np.random.get_state(), after):
            raise RuntimeError(
                f"{type(self).__name__}: the parent buffer's get() does not start by drawing np.random.permutation of "
                "all records, so the kept records cannot be yielded in its order"
            )
        indices = indices[self._kept_flat()[indices]]
        batch_size = len(indices) if batch_size is None else batch_size
        for start in range(0, len(indices), batch_size):
            yield self._get_samples(indices[start : start + batch_size])  # type: ignore[attr-defined]


def _same_rng_state(a: Any, b: Any) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


class RecurrentFilterMixin(_KeepMask):
    """
    Adds a keep mask to sb3-contrib's recurrent rollout buffers.

    Sequences stay whole: ``get()`` is the parent's (same split point, same sequences, same LSTM states), and each
    minibatch's ``mask`` (padding) is multiplied by the keep mask, so dropped records still carry the LSTM through
    their sequence but enter no loss term and no advantage statistic. Minibatches with fewer than 2 kept records are
    skipped: ``RecurrentPPO`` normalises advantages over the masked records, which is NaN for one record and
    undefined for none. Without a keep mask ``get()`` is exactly the parent's.
    """

    pad_and_flatten: Any

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        for samples in super().get(batch_size):  # type: ignore[misc]
            if self.keep_mask is None or int((samples.mask > 1e-8).sum()) >= 2:
                yield samples

    def _get_samples(self, batch_inds: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        samples = super()._get_samples(batch_inds, *args, **kwargs)  # type: ignore[misc]
        if self.keep_mask is None:
            return samples
        kept = self.pad_and_flatten(self._kept_flat()[batch_inds].astype(np.float32))
        return samples._replace(mask=samples.mask * kept.to(th.float32))


class FilteredRolloutBuffer(FilterMixin, RolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.RolloutBuffer` whose ``get()`` yields only kept records."""

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        return super().get(batch_size)


class FilteredDictRolloutBuffer(FilterMixin, DictRolloutBuffer):
    """A :class:`~stable_baselines3.common.buffers.DictRolloutBuffer` whose ``get()`` yields only kept records."""

    def get(self, batch_size: int | None = None) -> Generator[DictRolloutBufferSamples, None, None]:  # type: ignore[override]
        return super().get(batch_size)


class FilteredMaskableRolloutBuffer(FilterMixin, MaskableRolloutBuffer):
    """sb3-contrib's ``MaskableRolloutBuffer`` whose ``get()`` yields only kept records (with their action masks)."""


class FilteredMaskableDictRolloutBuffer(FilterMixin, MaskableDictRolloutBuffer):
    """sb3-contrib's ``MaskableDictRolloutBuffer`` whose ``get()`` yields only kept records (with their action masks)."""


class FilteredRecurrentRolloutBuffer(RecurrentFilterMixin, RecurrentRolloutBuffer):
    """sb3-contrib's ``RecurrentRolloutBuffer`` whose minibatches mask the dropped records inside their sequences."""


class FilteredRecurrentDictRolloutBuffer(RecurrentFilterMixin, RecurrentDictRolloutBuffer):
    """sb3-contrib's ``RecurrentDictRolloutBuffer`` whose minibatches mask the dropped records inside their sequences."""


#: The filtering variant of each parent buffer class (what a parent's ``rollout_buffer_class`` becomes).
FILTERED_BUFFERS: dict[type, type] = {
    RolloutBuffer: FilteredRolloutBuffer,
    DictRolloutBuffer: FilteredDictRolloutBuffer,
    MaskableRolloutBuffer: FilteredMaskableRolloutBuffer,
    MaskableDictRolloutBuffer: FilteredMaskableDictRolloutBuffer,
    RecurrentRolloutBuffer: FilteredRecurrentRolloutBuffer,
    RecurrentDictRolloutBuffer: FilteredRecurrentDictRolloutBuffer,
}


def is_filtering_buffer(buffer_class: Any) -> bool:
    """
    Whether a buffer class can filter (subclasses one of the two mixins).

    :param buffer_class: A class (anything else gives ``False``).
    :return: ``True`` for filtering buffers.
    """
    return isinstance(buffer_class, type) and issubclass(buffer_class, _KeepMask)
