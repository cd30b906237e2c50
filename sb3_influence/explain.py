"""
Explaining a trained model's action: which experience, collected with the model as in training, pushes it
towards taking ``a*`` in ``s*``? (The action objective of the docs page "How IIF works", on a fresh rollout.)
"""

import copy
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

from sb3_influence.objectives import ActionObjective
from sb3_influence.records import NumpyObs, RolloutRecords, select_obs
from sb3_influence.scoring import model_influence_scores


@dataclass(frozen=True)
class ExplainedRecord:
    """
    One record of an :class:`Explanation`.

    :param rank: 0 for the most positive score (the record that most pushes towards the action).
    :param index: Flat step-major index ``step * n_envs + env``.
    :param step: Step in the rollout.
    :param env: Environment index.
    :param observation: The state ``s_i`` (as the buffer stores it).
    :param action: The action ``a_i`` (as the buffer stores it).
    :param advantage: The raw GAE advantage ``A_hat_i``.
    :param return_: The value target ``R_i = A_hat_i + V(s_i)``.
    :param reward: The reward ``r_i``.
    :param score: The influence ``I_i`` on ``log pi(a*|s*)``.
    """

    rank: int
    index: int
    step: int
    env: int
    observation: Any
    action: np.ndarray
    advantage: float
    return_: float
    reward: float
    score: float


@dataclass(frozen=True)
class Explanation:
    """
    The records of a rollout ranked by their influence on ``log pi(a*|s*)``, returned by :func:`explain_action`.

    A positive score means a PPO gradient step on that record makes the model more likely to take ``a*`` in
    ``s*``; a negative one, less likely. The per-rank arrays are in ranked order (most positive first), so
    ``steps[0]``, ``envs[0]``, ``observations[0]``, ... describe the most supportive record.

    :param scores: Influence scores in buffer layout ``(n_steps, n_envs)``.
    :param order: Flat step-major indices (``step * n_envs + env``) ranked by score, most positive first
        (ties by index; non-finite scores last): ``np.argsort(-scores.reshape(-1), kind="stable")``.
    :param steps: Step of each ranked record.
    :param envs: Environment of each ranked record.
    :param observations: Observations of the ranked records (array, or dict of arrays for Dict spaces).
    :param actions: Actions of the ranked records (as the buffer stores them: ``(n, action_dim)``).
    :param advantages: Raw GAE advantages of the ranked records.
    :param returns: Value targets ``R = A_hat + V`` of the ranked records.
    :param rewards: Rewards of the ranked records.
    :param ranked_scores: Scores of the ranked records (``scores.reshape(-1)[order]``).
    :param observation: The explained observation ``s*``.
    :param action: The explained action ``a*``.
    :param log_prob: ``log pi(a*|s*)`` under the model (mean over pairs if several were given).
    :param records: The collected rollout (unranked), e.g. to score it again with
        :func:`~sb3_influence.influence_scores`.
    """

    scores: np.ndarray
    order: np.ndarray
    steps: np.ndarray
    envs: np.ndarray
    observations: NumpyObs
    actions: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    rewards: np.ndarray
    ranked_scores: np.ndarray
    observation: Any
    action: Any
    log_prob: float
    records: RolloutRecords

    def __len__(self) -> int:
        return int(self.order.size)

    def __getitem__(self, rank: int) -> ExplainedRecord:
        n = len(self)
        if not -n <= rank < n:
            raise IndexError(f"rank {rank} out of range for {n} records")
        rank = rank % n
        obs = self.observations
        return ExplainedRecord(
            rank=rank,
            index=int(self.order[rank]),
            step=int(self.steps[rank]),
            env=int(self.envs[rank]),
            observation={key: o[rank] for key, o in obs.items()} if isinstance(obs, dict) else obs[rank],
            action=self.actions[rank],
            advantage=float(self.advantages[rank]),
            return_=float(self.returns[rank]),
            reward=float(self.rewards[rank]),
            score=float(self.ranked_scores[rank]),
        )

    def __iter__(self) -> Iterator[ExplainedRecord]:
        return (self[rank] for rank in range(len(self)))

    def top(self, k: int = 10) -> list[ExplainedRecord]:
        """
        The ``k`` records that most push the model towards the action, most positive first.

        :param k: How many.
        :return: Records.
        """
        return [self[rank] for rank in range(min(k, len(self)))]

    def bottom(self, k: int = 10) -> list[ExplainedRecord]:
        """
        The ``k`` records that most push the model away from the action, most negative first.

        :param k: How many.
        :return: Records.
        """
        return [self[rank] for rank in range(len(self) - 1, max(len(self) - 1 - k, -1), -1)]

    def table(self, k: int = 5) -> str:
        """
        A plain-text table of the top-k and bottom-k records.

        :param k: Records per part.
        :return: The table.
        """
        from sb3_influence.figures import format_value

        header = f"{'rank':>5} {'step':>6} {'env':>4} {'action':>10} {'advantage':>10} {'return':>10} {'score':>11}  obs"

        def lines(records: list[ExplainedRecord]) -> list[str]:
            return [
                f"{r.rank:>5} {r.step:>6} {r.env:>4} {format_value(r.action):>10} {r.advantage:>10.4g} "
                f"{r.return_:>10.4g} {r.score:>11.4g}  {format_value(r.observation)}"
                for r in records
            ]

        n_positive = int(np.count_nonzero(self.ranked_scores > 0))
        return "\n".join(
            [
                f"Explanation of action {format_value(self.action)} in observation {format_value(self.observation)} "
                f"(log pi = {self.log_prob:.4g}): {len(self)} records, {n_positive} with positive influence",
                f"Top {min(k, len(self))} (push towards the action):",
                header,
                *lines(self.top(k)),
                f"Bottom {min(k, len(self))} (push away from the action):",
                header,
                *lines(self.bottom(k)),
            ]
        )

    def __str__(self) -> str:
        return self.table()


def collect_rollout(
    model: BaseAlgorithm,
    env: GymEnv | str,
    n_steps: int,
    seed: int | None = None,
) -> RolloutBuffer:
    """
    Collect ``n_steps`` per environment with the model's policy (stochastic, as in training) into a fresh rollout
    buffer, by the model's own ``collect_rollouts`` (so masks, LSTM states, gSDE noise and time-limit bootstrapping
    are handled as in training, for every on-policy algorithm), with GAE from the model's ``gamma`` and
    ``gae_lambda``.

    The model is left alone: its buffer, ``_last_obs``, ``_last_episode_starts``, LSTM states, ``num_timesteps``,
    episode statistics, gSDE noise and training mode are restored, and the global torch RNG is restored afterwards
    (sampling uses a forked RNG seeded with ``seed``, or fresh OS entropy). The environment is reset first (with
    ``seed`` if given).

    :param model: An on-policy model (PPO, A2C, sb3-contrib's MaskablePPO or RecurrentPPO, or their IIF twins).
    :param env: The environment: a ``VecEnv``, a gymnasium env or an id, wrapped like SB3 does (``Monitor`` and
        ``DummyVecEnv`` for a gymnasium env, ``VecTransposeImage`` for channel-last images); its spaces must then be
        the model's.
    :param n_steps: Steps per environment.
    :param seed: Seeds the environment reset and the action sampling.
    :return: A full buffer of the model's buffer class with advantages computed.
    """
    if not isinstance(model, OnPolicyAlgorithm):
        raise ValueError(f"explain_action needs an on-policy algorithm, got {type(model).__name__}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    venv = model._wrap_env(gym.make(env) if isinstance(env, str) else env, verbose=0)
    if venv.observation_space != model.observation_space or venv.action_space != model.action_space:
        raise ValueError(
            f"The environment's spaces ({venv.observation_space}, {venv.action_space}) differ from the model's "
            f"({model.observation_space}, {model.action_space})"
        )
    buffer = _fresh_buffer(model, n_steps, venv.num_envs)
    saved = {name: getattr(model, name) for name in _ROLLOUT_STATE if hasattr(model, name)}
    saved["ep_info_buffer"], saved["ep_success_buffer"] = copy.copy(model.ep_info_buffer), copy.copy(model.ep_success_buffer)
    policy = model.policy
    noise = dict(vars(policy.action_dist)) if hasattr(policy, "action_dist") else None
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    torch_seed = seed if seed is not None else int(np.random.SeedSequence().entropy % (2**63))  # type: ignore[operator]
    was_training = policy.training
    with th.random.fork_rng(devices=devices):
        th.manual_seed(torch_seed)
        try:
            if seed is not None:
                venv.seed(seed)
            model._last_obs = venv.reset()  # type: ignore[assignment]
            model._last_episode_starts = np.ones((venv.num_envs,), dtype=bool)
            model.ep_info_buffer, model.ep_success_buffer = deque(maxlen=1), deque(maxlen=1)  # statistics: discarded
            if "_last_lstm_states" in saved:
                lstm: Any = policy.lstm_actor
                zeros = th.zeros((lstm.num_layers, venv.num_envs, lstm.hidden_size), device=model.device)
                model._last_lstm_states = RNNStates((zeros, zeros.clone()), (zeros.clone(), zeros.clone()))  # type: ignore[attr-defined]
            callback = CallbackList([])
            callback.init_callback(model)
            model.collect_rollouts(venv, callback, buffer, n_rollout_steps=n_steps)  # type: ignore[arg-type]
        finally:
            for name, value in saved.items():
                setattr(model, name, value)
            if noise is not None:
                vars(policy.action_dist).clear()
                vars(policy.action_dist).update(noise)
            policy.set_training_mode(was_training)
    return buffer


#: The model's attributes that ``collect_rollouts`` changes (restored by :func:`collect_rollout`).
_ROLLOUT_STATE = ("_last_obs", "_last_episode_starts", "_last_lstm_states", "num_timesteps")


def _fresh_buffer(model: OnPolicyAlgorithm, n_steps: int, n_envs: int) -> RolloutBuffer:
    """An empty buffer of the model's buffer class for ``n_steps`` x ``n_envs`` records."""
    cls = type(model.rollout_buffer)
    kwargs: dict[str, Any] = dict(
        device=model.device, gamma=float(model.gamma), gae_lambda=float(model.gae_lambda), n_envs=n_envs
    )
    if hasattr(model.rollout_buffer, "hidden_state_shape"):  # sb3-contrib's recurrent buffers
        lstm: Any = model.policy.lstm_actor
        shape = (n_steps, lstm.num_layers, n_envs, lstm.hidden_size)
        return cls(n_steps, model.observation_space, model.action_space, shape, **kwargs)  # type: ignore[call-arg, arg-type]
    return cls(n_steps, model.observation_space, model.action_space, **kwargs, **model.rollout_buffer_kwargs)


def explain_action(
    model: BaseAlgorithm,
    env: GymEnv | str,
    observation: Any,
    action: Any,
    n_steps: int = 2048,
    seed: int | None = None,
    action_masks: Any = None,
) -> Explanation:
    """
    Which experience makes a trained model take ``action`` in ``observation``?

    Collects a rollout of ``n_steps`` per environment with the model's policy (see :func:`collect_rollout`; the
    model itself is not changed), scores every record with the action objective
    ``f(theta) = log pi_theta(action | observation)`` (:class:`~sb3_influence.ActionObjective`) at the model's
    current parameters, with the model's PPO loss settings (``ent_coef``, ``vf_coef``, ``normalize_advantage``;
    Adam preconditioning if an :class:`~sb3_influence.InfluencePPO` uses it), and ranks the records. These are the
    scores ``model.compute_influence(ActionObjective(observation, action))`` would give on that rollout.
    Works for PPO, A2C and MaskablePPO (pass the masks of ``observation``) and their IIF twins; not for LSTM
    policies, whose action at ``observation`` depends on a sequence the objective does not have.

    :param model: An on-policy model (PPO, A2C, MaskablePPO or their IIF twins).
    :param env: The environment to collect in: a ``VecEnv``, a gymnasium env or an id (see :func:`collect_rollout`).
        Use the same wrappers as in training (e.g. a ``VecNormalize`` with ``training=False``). It is reset.
    :param observation: ``s*`` as the environment returns it (after wrappers such as ``VecNormalize``), or a batch.
    :param action: ``a*`` (one per observation).
    :param n_steps: Steps per environment to collect.
    :param seed: Seeds the environment and the action sampling (``None``: fresh randomness; the global RNGs are
        not consumed either way).
    :param action_masks: For maskable models, the action masks of ``observation`` (one row per observation);
        ``None``: no mask (every action allowed).
    :return: The ranked records.
    """
    if hasattr(model.policy, "lstm_actor"):
        raise ValueError(
            "explain_action does not support recurrent (LSTM) policies: the action at an observation depends on the "
            "LSTM state of its sequence"
        )
    objective = ActionObjective(observation, action, action_masks=action_masks)
    buffer = collect_rollout(model, env, n_steps, seed)
    records = RolloutRecords.from_buffer(buffer)
    scores = model_influence_scores(model, records, objective)
    order = np.argsort(-scores.reshape(-1), kind="stable")
    log_prob = objective.value(model.policy, records)  # type: ignore[arg-type]
    return Explanation(
        scores=scores,
        order=order,
        steps=order // records.n_envs,
        envs=order % records.n_envs,
        observations=select_obs(records.observations, order),
        actions=np.asarray(records.actions)[order],
        advantages=np.asarray(records.advantages)[order],
        returns=np.asarray(records.returns)[order],
        rewards=np.asarray(records.rewards)[order],
        ranked_scores=scores.reshape(-1)[order],
        observation=objective.observations,
        action=objective.actions,
        log_prob=log_prob,
        records=records,
    )
