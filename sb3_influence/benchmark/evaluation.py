"""Stochastic evaluation for the benchmarks, with fresh action noise or on a fixed test set."""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def evaluation_returns(model: Any, env: Any, n_episodes: int, seed: int | None = None) -> np.ndarray:
    """
    Returns of ``n_episodes`` stochastic episodes (``deterministic=False``, as the paper evaluates), with SB3's
    ``evaluate_policy`` (which carries LSTM states for recurrent policies), or sb3-contrib's masked one for MaskablePPO.

    With ``seed=None`` the episodes continue the env's own state and the action noise is whatever the global RNGs
    give (fresh noise at every call). With a ``seed``, the call is a fixed test set: the env is reset with
    ``seed``, its spaces are seeded (``seed + i`` for the ``i``-th env, as ``make_vec_env`` does; some envs draw
    states from them) and the policy samples under ``torch.manual_seed(seed)`` (numpy and python seeded alike),
    so the same policy always gets the same returns, and two policies face the same episodes and the same noise:
    two checkpoints differ only because their policies differ. Either way every global RNG is restored
    afterwards, so training does not depend on evaluation.

    :param model: The model.
    :param env: A ``VecEnv`` for evaluation.
    :param n_episodes: Number of episodes.
    :param seed: The test set's seed, or ``None`` for fresh noise.
    :return: The episode returns, ``(n_episodes,)``.
    """
    import torch as th
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.evaluation import evaluate_policy as evaluate_masked
    from stable_baselines3.common.evaluation import evaluate_policy

    # MaskablePPO (and its IIF twin) act on the env's action masks
    evaluate: Any = evaluate_masked if isinstance(model, MaskablePPO) else evaluate_policy

    states = (random.getstate(), np.random.get_state(), th.get_rng_state())
    try:
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            th.manual_seed(seed)
            env.seed(seed)
            spaces = zip(env.get_attr("action_space"), env.get_attr("observation_space"), strict=True)
            for index, (action_space, observation_space) in enumerate(spaces):
                action_space.seed(seed + index)
                observation_space.seed(seed + index)
        rewards, _ = evaluate(model, env, n_eval_episodes=n_episodes, deterministic=False, return_episode_rewards=True)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        th.set_rng_state(states[2])
    return np.asarray(rewards, dtype=np.float64)


def evaluate_fixed(model: Any, env: Any, n_episodes: int, seed: int) -> float:
    """
    Mean return on a fixed test set (:func:`evaluation_returns` with a ``seed``).

    :param model: The model.
    :param env: A ``VecEnv`` for evaluation.
    :param n_episodes: Number of episodes.
    :param seed: The test set's seed.
    :return: The mean episode return.
    """
    return float(evaluation_returns(model, env, n_episodes, seed).mean())
