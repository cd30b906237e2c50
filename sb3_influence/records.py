"""What is attributed: the records of a PPO rollout buffer, in a layout that does not depend on the buffer's state."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
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

    @property
    def n(self) -> int:
        """Number of records ``n_steps * n_envs``."""
        return self.n_steps * self.n_envs

    @classmethod
    def from_buffer(cls, buffer: RolloutBuffer) -> "RolloutRecords":
        """
        Read a full rollout buffer without changing it, before or after ``get()`` flattened it.

        :param buffer: A full ``RolloutBuffer`` or ``DictRolloutBuffer`` whose advantages are computed.
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
        return cls(
            observations=observations,
            actions=view(buffer.actions),
            log_probs=view(buffer.log_probs).reshape(-1),
            values=view(buffer.values).reshape(-1),
            advantages=view(buffer.advantages).reshape(-1),
            returns=view(buffer.returns).reshape(-1),
            # get() never flattens rewards and episode starts
            rewards=buffer.rewards.reshape(-1),
            episode_starts=buffer.episode_starts.reshape(-1),
            n_steps=n_steps,
            n_envs=n_envs,
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

        :param chunk_size: Records per slice.
        :param finite_only: Yield only the records of :attr:`finite`, as index arrays (empty chunks are skipped).
        :return: Iterator of slices, or of index arrays with ``finite_only``.
        """
        finite = self.finite if finite_only else None
        for start in range(0, self.n, chunk_size):
            index = slice(start, min(start + chunk_size, self.n))
            if finite is None or finite[index].all():
                yield index
            elif finite[index].any():
                yield start + np.flatnonzero(finite[index])


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
    policy: ActorCriticPolicy, records: RolloutRecords, index: slice | np.ndarray
) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
    """
    ``policy.evaluate_actions`` on some records: values, log-probabilities and entropies (or ``None``).

    :param policy: The actor-critic policy.
    :param records: The records.
    :param index: Which records.
    :return: ``(values, log_prob, entropy)``, each of shape ``(len(index),)``.
    """
    obs = observations_to_tensor(select_obs(records.observations, index), policy.device)
    actions = actions_to_tensor(records.actions[index], policy.action_space, policy.device)
    values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    return values.flatten(), log_prob.flatten(), None if entropy is None else entropy.flatten()
