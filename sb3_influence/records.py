"""What is attributed: the records of a PPO rollout buffer, in a layout that does not depend on the buffer's state."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.utils import obs_as_tensor

NumpyObs = np.ndarray | dict[str, np.ndarray]
TorchObs = th.Tensor | dict[str, th.Tensor]


def _unflatten(arr: np.ndarray, n_steps: int, n_envs: int) -> np.ndarray:
    """Undo ``swap_and_flatten``: ``(n_envs * n_steps, ...)`` in env-major order to ``(n_steps, n_envs, ...)``."""
    return arr.reshape(n_envs, n_steps, *arr.shape[1:]).swapaxes(0, 1)


def _step_major(arr: np.ndarray, n_steps: int, n_envs: int, flattened: bool) -> np.ndarray:
    """View a buffer array as ``(n_steps * n_envs, ...)`` with flat index ``step * n_envs + env``."""
    if flattened:
        arr = _unflatten(arr, n_steps, n_envs)
    return arr.reshape(n_steps * n_envs, *arr.shape[2:])


@dataclass(frozen=True)
class RolloutRecords:
    """
    The records ``z_i = (s_i, a_i, log pi_k(a_i|s_i), V_k(s_i), A_i, R_i)`` of a full rollout buffer.

    Arrays are flat in step-major order (index ``step * n_envs + env``), so that any per-record
    array reshapes to ``(n_steps, n_envs)``, the layout of ``rollout_buffer.advantages``.
    The arrays are views or copies of the buffer's: never write to them.

    :param observations: Observations, ``(n, *obs_shape)`` or a dict of such arrays.
    :param actions: Actions, ``(n, action_dim)`` as the buffer stores them.
    :param log_probs: ``log pi_k(a_i|s_i)`` at collection time.
    :param values: ``V_k(s_i)`` at collection time.
    :param advantages: Raw GAE advantages.
    :param returns: ``R_i = A_i + V_k(s_i)``, the value targets.
    :param rewards: Rewards ``r_i``.
    :param episode_starts: 1.0 where ``s_i`` is the first state of an episode (as SB3 stores it).
    :param n_steps: Steps per environment.
    :param n_envs: Number of environments.
    :param action_masks: The action masks of a maskable buffer, ``(n, mask_dim)`` (``None`` for other buffers):
        the policy is evaluated on the masked distributions, as ``MaskablePPO.train()`` does.
    :param lstm_states: For a recurrent buffer, the LSTM states ``(h_pi, c_pi, h_vf, c_vf)`` at each environment's
        first step, each ``(n_layers, n_envs, hidden_size)`` (``None`` for other buffers). Records are then evaluated
        by whole sequences: each environment's rollout from these states, the LSTM reset at episode starts
        (see :func:`evaluate_records`).
    """

    observations: NumpyObs
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    rewards: np.ndarray
    episode_starts: np.ndarray
    n_steps: int
    n_envs: int
    action_masks: np.ndarray | None = None
    lstm_states: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def recurrent(self) -> bool:
        """Whether the records come from a recurrent buffer (evaluated by whole sequences)."""
        return self.lstm_states is not None

    @property
    def n(self) -> int:
        """Number of records ``n_steps * n_envs``."""
        return self.n_steps * self.n_envs

    @classmethod
    def from_buffer(cls, buffer: RolloutBuffer) -> "RolloutRecords":
        """
        Read a full rollout buffer without changing it, before or after ``get()`` flattened it.

        :param buffer: A full ``RolloutBuffer`` or ``DictRolloutBuffer`` (or an sb3-contrib maskable or recurrent
            buffer) whose advantages are computed.
        :return: The buffer's records.
        """
        if not buffer.full:
            raise ValueError("The rollout buffer is not full: influence is computed on a complete rollout")
        n_steps, n_envs, flat = buffer.buffer_size, buffer.n_envs, buffer.generator_ready

        def view(arr: np.ndarray) -> np.ndarray:
            return _step_major(arr, n_steps, n_envs, flat)

        observations: NumpyObs
        if isinstance(buffer, DictRolloutBuffer):
            observations = {key: view(obs) for key, obs in buffer.observations.items()}
        else:
            observations = view(buffer.observations)
        lstm_states = None
        episode_starts = buffer.episode_starts.reshape(-1)  # SB3's get() never flattens rewards and episode starts
        if hasattr(buffer, "hidden_states_pi"):  # sb3-contrib's recurrent buffers, whose get() flattens both
            episode_starts = view(buffer.episode_starts).reshape(-1)
            lstm_states = tuple(
                _first_states(getattr(buffer, name), n_steps, n_envs, flat)
                for name in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
            )
        masks = getattr(buffer, "action_masks", None)
        return cls(
            observations=observations,
            actions=view(buffer.actions),
            log_probs=view(buffer.log_probs).reshape(-1),
            values=view(buffer.values).reshape(-1),
            advantages=view(buffer.advantages).reshape(-1),
            returns=view(buffer.returns).reshape(-1),
            rewards=buffer.rewards.reshape(-1),
            episode_starts=episode_starts,
            n_steps=n_steps,
            n_envs=n_envs,
            action_masks=None if masks is None else view(masks),
            lstm_states=lstm_states,  # type: ignore[arg-type]
        )

    @property
    def finite(self) -> np.ndarray:
        """
        Flat boolean mask of the records whose reward, advantage and return are all finite.

        The others (a NaN or infinite reward, and every record whose advantage or return it reaches through
        GAE) are left out of the objective, of the scores and of the update.
        """
        return np.isfinite(self.rewards) & np.isfinite(self.advantages) & np.isfinite(self.returns)

    def chunks(self, chunk_size: int, finite_only: bool = False) -> Iterator[slice | np.ndarray]:
        """
        Consecutive slices covering all records (or index arrays covering the finite ones).

        Recurrent records come in whole sequences instead: index arrays of whole environments (as many as fit in
        ``chunk_size`` records, at least one), each environment's steps in order; ``finite_only`` is then ignored
        (the LSTM needs every step of a sequence) and callers mask the non-finite records themselves.

        :param chunk_size: Records per slice.
        :param finite_only: Yield only the records of :attr:`finite`, as index arrays (empty chunks are skipped).
        :return: Iterator of slices, or of index arrays with ``finite_only``.
        """
        if self.recurrent:
            per_chunk = max(1, chunk_size // self.n_steps)
            steps = np.arange(self.n_steps)
            for first in range(0, self.n_envs, per_chunk):
                envs = np.arange(first, min(first + per_chunk, self.n_envs))
                yield (steps[None, :] * self.n_envs + envs[:, None]).reshape(-1)
            return
        finite = self.finite if finite_only else None
        for start in range(0, self.n, chunk_size):
            index = slice(start, min(start + chunk_size, self.n))
            if finite is None or finite[index].all():
                yield index
            elif finite[index].any():
                yield start + np.flatnonzero(finite[index])


def _first_states(states: np.ndarray, n_steps: int, n_envs: int, flattened: bool) -> np.ndarray:
    """A recurrent buffer's LSTM states at each env's first step, ``(n_layers, n_envs, hidden_size)``."""
    if flattened:  # (n_envs * n_steps, n_layers, hidden), env-major
        return states.reshape(n_envs, n_steps, *states.shape[1:])[:, 0].swapaxes(0, 1)
    return states[0]  # (n_steps, n_layers, n_envs, hidden)


def observations_to_tensor(observations: NumpyObs, device: th.device) -> TorchObs:
    """
    Convert buffer observations to tensors, as SB3's rollout buffer does for training.

    :param observations: A batch of observations or a dict of batches.
    :param device: Target device.
    :return: Tensor(s) on ``device``.
    """
    return obs_as_tensor(observations, device)  # type: ignore[arg-type]


def actions_to_tensor(actions: np.ndarray, action_space: spaces.Space, device: th.device) -> th.Tensor:
    """
    Convert buffer actions to the tensor ``policy.evaluate_actions`` gets in PPO's ``train()``.

    :param actions: Actions, ``(n, action_dim)``.
    :param action_space: The policy's action space.
    :param device: Target device.
    :return: Float actions, or long and flat for ``Discrete``.
    """
    tensor = th.as_tensor(np.asarray(actions, dtype=np.float32), device=device)
    if isinstance(action_space, spaces.Discrete):
        return tensor.long().flatten()
    return tensor


def select_obs(observations: NumpyObs, index: slice | np.ndarray) -> NumpyObs:
    """
    Index a batch of observations (array or dict of arrays).

    :param observations: Observations.
    :param index: Slice or index array along the batch axis.
    :return: The selected observations.
    """
    if isinstance(observations, dict):
        return {key: obs[index] for key, obs in observations.items()}
    return observations[index]


def evaluate_records(
    policy: Any, records: RolloutRecords, index: slice | np.ndarray
) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
    """
    ``policy.evaluate_actions`` on some records, as the algorithm's ``train()`` calls it: values, log-probabilities
    and entropies (or ``None``).

    - Plain records: ``evaluate_actions(obs, actions)`` (PPO, A2C).
    - Records with action masks: ``evaluate_actions(obs, actions, action_masks=masks)`` (MaskablePPO).
    - Recurrent records: ``index`` must hold whole environments, each one's steps in order (as
      :meth:`RolloutRecords.chunks` yields them); each environment is one sequence from its first step's stored
      LSTM states, reset at episode starts: ``evaluate_actions(obs, actions, lstm_states, episode_starts)``
      (RecurrentPPO). At the collection parameters this reproduces the rollout's values and log-probabilities.

    :param policy: The policy (an ``ActorCriticPolicy``, or sb3-contrib's maskable or recurrent policy).
    :param records: The records.
    :param index: Which records.
    :return: ``(values, log_prob, entropy)``, each of shape ``(len(index),)``.
    """
    obs = observations_to_tensor(select_obs(records.observations, index), policy.device)
    actions = actions_to_tensor(records.actions[index], policy.action_space, policy.device)
    if records.lstm_states is not None:
        index = np.asarray(index)
        if index.size % records.n_steps or not np.array_equal(
            index.reshape(-1, records.n_steps), index[:: records.n_steps, None] + records.n_envs * np.arange(records.n_steps)
        ):
            raise ValueError("Recurrent records are evaluated by whole sequences: index must hold whole environments")
        envs = index[:: records.n_steps] % records.n_envs
        h_pi, c_pi, h_vf, c_vf = (th.as_tensor(s[:, envs], device=policy.device).contiguous() for s in records.lstm_states)
        starts = th.as_tensor(records.episode_starts[index], dtype=th.float32, device=policy.device)
        values, log_prob, entropy = policy.evaluate_actions(obs, actions, RNNStates((h_pi, c_pi), (h_vf, c_vf)), starts)
    elif records.action_masks is not None:
        values, log_prob, entropy = policy.evaluate_actions(obs, actions, action_masks=records.action_masks[index])
    else:
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    return values.flatten(), log_prob.flatten(), None if entropy is None else entropy.flatten()
