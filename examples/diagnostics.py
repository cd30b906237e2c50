"""
Watch what Iterative Influence-based Filtering does, in TensorBoard.

Trains :class:`~sb3_influence.InfluencePPO` (or a plain PPO with ``--plain-ppo``: scores are computed, nothing is
dropped) with the two diagnostics callbacks, then prints how to open TensorBoard:

    python examples/diagnostics.py --env lunarlander --timesteps 40000 --logdir /tmp/iif_diagnostics
    tensorboard --logdir /tmp/iif_diagnostics --host 127.0.0.1

A few minutes on one CPU core. What to look at (under ``influence/`` and ``behavior/``):

- ``influence/negative_fraction``, ``dropped``, ``kept_fraction``: how much IIF filters;
- ``influence/spearman_advantage`` / ``spearman_abs_advantage``: how much the scores just follow the advantage;
- ``influence/spearman_mc_product``: the paper's advantage-accuracy analysis (negative: the most harmful records are
  those whose GAE advantage disagrees with the Monte-Carlo one);
- ``influence/scoring_time_ratio``: the cost of scoring relative to PPO's update;
- the histograms, the score-vs-advantage scatter (IMAGES tab), the top/bottom records table (TEXT tab) and, for
  MiniGrid, the bottom states;
- ``behavior/<probe>/...``: the behaviour-formation timeline of the probe action.
"""

import argparse
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_influence.callbacks import BehaviorTimelineCallback, InfluenceDiagnosticsCallback
from sb3_influence.influence_ppo import InfluencePPO
from sb3_influence.policies import MiniGridCNN


def make_minigrid() -> gym.Env:
    import minigrid  # noqa: F401  (registers the MiniGrid ids)
    from minigrid.wrappers import ImgObsWrapper

    return ImgObsWrapper(gym.make("MiniGrid-Empty-8x8-v0"))


def setup(name: str, seed: int) -> tuple[Any, dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The environment, the model's keyword arguments and the behaviour probes for one of the example's tasks."""
    if name == "lunarlander":
        env = make_vec_env("LunarLander-v3", n_envs=1, seed=seed)
        obs = env.reset()[0]
        kwargs: dict[str, Any] = dict(n_steps=1024, batch_size=64, n_epochs=4, filter_fraction=0.125)
        # at the start, hovering over the pad: fire the main engine (action 2)
        probes = {"start_main_engine": (obs, 2), "tilted_fire_right_engine": (np.array([0, 0.5, 0, 0, 0.3, 0, 0, 0]), 3)}
    elif name == "minigrid":
        env = make_vec_env(make_minigrid, n_envs=1, seed=seed)
        obs = env.reset()[0]
        kwargs = dict(
            n_steps=512,
            batch_size=64,
            n_epochs=4,
            filter_fraction=0.125,
            policy_kwargs=dict(features_extractor_class=MiniGridCNN, net_arch=dict(pi=[64, 64], vf=[64, 64])),
        )
        probes = {"start_forward": (obs.transpose(1, 2, 0) if obs.shape[0] == 3 else obs, 2)}
    elif name == "cartpole":
        env = make_vec_env("CartPole-v1", n_envs=2, seed=seed)
        kwargs = dict(n_steps=256, batch_size=64, n_epochs=4, filter_fraction=0.5)
        probes = {"pole_right_push_right": (np.array([0.0, 0.0, 0.1, 0.5]), 1)}
    else:
        raise ValueError(f"unknown env {name!r}")
    return env, kwargs, probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=("lunarlander", "minigrid", "cartpole"), default="lunarlander")
    parser.add_argument("--timesteps", type=int, default=40_000)
    parser.add_argument("--logdir", default="/tmp/iif_diagnostics")
    parser.add_argument("--plain-ppo", action="store_true", help="diagnose a plain PPO (nothing dropped)")
    parser.add_argument("--log-every", type=int, default=1, help="diagnose every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    env, kwargs, probes = setup(args.env, args.seed)
    policy = "CnnPolicy" if args.env == "minigrid" else "MlpPolicy"
    if args.plain_ppo:
        kwargs.pop("filter_fraction")
        model: PPO = PPO(policy, env, seed=args.seed, tensorboard_log=args.logdir, verbose=1, **kwargs)
    else:
        model = InfluencePPO(policy, env, seed=args.seed, tensorboard_log=args.logdir, verbose=1, **kwargs)
    callbacks = [
        InfluenceDiagnosticsCallback(log_every=args.log_every, top_k=5),
        BehaviorTimelineCallback(probes, log_every=args.log_every),
    ]
    name = f"{'PPO' if args.plain_ppo else 'InfluencePPO'}_{args.env}"
    model.learn(args.timesteps, callback=callbacks, tb_log_name=name)
    print(f"\nDone. Open the diagnostics with:\n    tensorboard --logdir {args.logdir} --host 127.0.0.1\n")
    if isinstance(model, InfluencePPO) and model.last_influence is not None:
        report = model.last_influence
        print(f"Last iteration: dropped {report.n_dropped} of {report.scores.size} records, scoring {report.seconds:.3f} s")


if __name__ == "__main__":
    main()
