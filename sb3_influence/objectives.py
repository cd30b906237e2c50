"""Against what influence is measured: objectives ``f(theta)`` to maximise (docs page "How IIF works", "The objectives")."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_influence.records import RolloutRecords, evaluate_records


class InfluenceObjective(ABC):
    """
    An objective ``f(theta)`` whose gradient is the direction every record's influence is measured along.

    Subclasses yield ``f`` as a sum of scalar terms, so that its gradient can be accumulated chunk by chunk
    in bounded memory.
    """

    @abstractmethod
    def terms(self, policy: ActorCriticPolicy, records: RolloutRecords, chunk_size: int) -> Iterator[th.Tensor]:
        """
        Scalar tensors (differentiable w.r.t. the policy's parameters) whose sum is ``f(theta)``.

        :param policy: The policy at the parameters being attributed.
        :param records: The rollout buffer's records (the objective may use them as its validation set).
        :param chunk_size: The most records or pairs to evaluate in one forward pass.
        :return: Iterator of scalar tensors.
        """

    def value(self, policy: ActorCriticPolicy, records: RolloutRecords, chunk_size: int = 2048) -> float:
        """
        Evaluate ``f(theta)`` without gradients.

        :param policy: The policy.
        :param records: The rollout buffer's records.
        :param chunk_size: The most records per forward pass.
        :return: ``f(theta)``.
        """
        with th.no_grad():
            return float(sum(term.item() for term in self.terms(policy, records, chunk_size)))


class ReturnObjective(InfluenceObjective):
    """
    The return objective ``f_return(theta) = (1/n) sum_j A_j log pi_theta(a_j|s_j)`` over the rollout buffer,
    with raw GAE advantages ``A`` (the default objective of :class:`~sb3_influence.InfluencePPO`).

    It takes the current policy as the reference and the buffer itself as the validation set: a record
    scores positive when a gradient step on it raises the advantage-weighted likelihood of the whole rollout.
    Records with non-finite data (:attr:`~sb3_influence.RolloutRecords.finite`) are left out of the sum.

    With ``center=True`` the advantages are centred first: ``A_j - mean(A)``, the mean over every record of the
    buffer with finite data (masked or not, so that the objectives of disjoint masks still add up). A constant
    baseline leaves the objective's expected gradient unchanged (``E[grad log pi] = 0`` on the policy's own
    actions) but removes from the sampled one the term ``mean(A) * sum_j grad log pi(a_j|s_j)``, which raises the
    likelihood of whatever was done; a lagging value function makes ``mean(A)`` large (benchmarks/RESULTS.md).

    :param mask: Optional boolean array ``(n_steps, n_envs)`` (or flat, step-major): only these records' terms
        are summed (still divided by the buffer's ``n``, so the objectives of disjoint masks add up to ``f``).
        Cross-fitting uses one mask per fold.
    :param center: Whether to subtract the buffer's mean advantage (a constant baseline).
    """

    mask: np.ndarray | None = None  # class defaults: objectives pickled before these options existed load as before
    center: bool = False

    def __init__(self, mask: np.ndarray | None = None, center: bool = False) -> None:
        if not isinstance(center, (bool, np.bool_)):
            raise ValueError(f"center must be a bool, got {center!r}")
        self.mask = None if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        self.center = bool(center)

    def terms(self, policy: ActorCriticPolicy, records: RolloutRecords, chunk_size: int) -> Iterator[th.Tensor]:
        if self.mask is not None and self.mask.size != records.n:
            raise ValueError(f"ReturnObjective mask has {self.mask.size} entries for {records.n} records")
        include = records.finite if self.mask is None else records.finite & self.mask
        advantages_np = np.asarray(records.advantages, dtype=np.float64)
        if self.center and records.finite.any():
            advantages_np = advantages_np - advantages_np[records.finite].mean()
        advantages = th.as_tensor(np.where(include, advantages_np, 0.0), dtype=th.float32, device=policy.device)
        if records.recurrent:  # whole sequences; the records left out weigh 0
            included = th.as_tensor(include, device=policy.device)
            for sequences in records.chunks(chunk_size):
                if include[sequences].any():
                    _, log_prob, _ = evaluate_records(policy, records, sequences)
                    yield (advantages[sequences] * log_prob)[included[sequences]].sum() / records.n
            return
        for start in range(0, records.n, chunk_size):
            block = include[start : start + chunk_size]
            index: slice | np.ndarray = slice(start, start + block.size) if block.all() else start + np.flatnonzero(block)
            if block.any():
                _, log_prob, _ = evaluate_records(policy, records, index)
                yield (advantages[index] * log_prob).sum() / records.n

    def __repr__(self) -> str:
        options = [] if self.mask is None else [f"mask with {int(self.mask.sum())} records"]
        options += ["center=True"] if self.center else []
        return f"ReturnObjective({', '.join(options)})"


class ActionObjective(InfluenceObjective):
    """
    The action objective ``f_action(theta) = mean_k log pi_theta(a*_k | s*_k)`` over given (state, action) pairs:
    which records made the agent take ``a*`` in ``s*``?

    :param observations: One observation or a batch of them (arrays, or a dict of arrays for Dict spaces),
        as the environment returns them (before the policy's preprocessing).
    :param actions: The action(s) of interest, one per observation.
    :param action_masks: For a maskable policy (sb3-contrib's MaskablePPO), the action masks of the observations
        (one row per observation; ``None``: no mask); the log-probabilities are those of the masked distributions.
    """

    action_masks: np.ndarray | None = None  # class default: objectives pickled before masks existed load unmasked

    def __init__(self, observations: Any, actions: Any, action_masks: Any = None) -> None:
        if isinstance(observations, dict):
            self.observations: Any = {key: np.asarray(obs) for key, obs in observations.items()}
        else:
            self.observations = np.asarray(observations)
        self.actions = np.asarray(actions)
        if self.actions.size == 0:
            raise ValueError("ActionObjective needs at least one action")
        self.action_masks = None if action_masks is None else np.asarray(action_masks, dtype=bool)

    def _tensors(self, policy: ActorCriticPolicy) -> tuple[Any, th.Tensor]:
        obs, vectorized = policy.obs_to_tensor(self.observations)
        n = next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0]
        space = policy.action_space
        if isinstance(space, spaces.Discrete):
            action_shape: tuple[int, ...] = ()
        elif isinstance(space, spaces.MultiDiscrete):
            action_shape = (len(space.nvec),)
        elif isinstance(space, spaces.MultiBinary):
            action_shape = (int(np.prod(space.shape)),)
        else:
            action_shape = tuple(space.shape or ())
        expected = n * int(np.prod(action_shape))
        if self.actions.size != expected:
            raise ValueError(
                f"ActionObjective got {self.actions.size} action values for {n} observation(s) "
                f"({'a batch' if vectorized else 'a single observation'}); expected {expected} for {space}"
            )
        if isinstance(space, spaces.Discrete):
            if np.any(self.actions < 0) or np.any(self.actions >= space.n):
                raise ValueError(f"ActionObjective actions {self.actions.reshape(-1)} are outside {space}")
            actions = th.as_tensor(self.actions.reshape(n), dtype=th.long, device=policy.device)
        else:
            actions = th.as_tensor(self.actions.reshape(n, *action_shape), dtype=th.float32, device=policy.device)
        return obs, actions

    def terms(self, policy: ActorCriticPolicy, records: RolloutRecords, chunk_size: int) -> Iterator[th.Tensor]:
        if hasattr(policy, "lstm_actor"):
            raise ValueError("ActionObjective does not support recurrent (LSTM) policies: its states have no sequence")
        obs, actions = self._tensors(policy)
        n = actions.shape[0]
        masks = None
        if self.action_masks is not None:
            masks = self.action_masks.reshape(n, -1)
        for start in range(0, n, chunk_size):
            index = slice(start, min(start + chunk_size, n))
            obs_chunk = {key: o[index] for key, o in obs.items()} if isinstance(obs, dict) else obs[index]
            if masks is not None:
                _, log_prob, _ = policy.evaluate_actions(obs_chunk, actions[index], action_masks=masks[index])  # type: ignore[call-arg]
            else:
                _, log_prob, _ = policy.evaluate_actions(obs_chunk, actions[index])
            yield log_prob.sum() / n

    def __repr__(self) -> str:
        return f"ActionObjective(n_pairs={self.actions.shape[0] if self.actions.ndim else 1})"
