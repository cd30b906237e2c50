"""
Quick start: InfluencePPO vs PPO on CartPole-v1, same seeds, with TensorBoard logs.

    python examples/compare.py                 # about a minute on a laptop CPU
    tensorboard --logdir runs/quickstart       # train/, rollout/ and influence/ curves

InfluencePPO is a drop-in PPO: the only change below is the class (and ``filter_fraction``).
"""

import argparse

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_influence import InfluencePPO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--timesteps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--logdir", default="runs/quickstart")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"PPO": [], "InfluencePPO": []}
    for seed in args.seeds:
        for name, cls, extra in (("PPO", PPO, {}), ("InfluencePPO", InfluencePPO, dict(filter_fraction=0.5))):
            env = make_vec_env(args.env, n_envs=4, seed=seed)
            model = cls("MlpPolicy", env, n_steps=256, batch_size=64, seed=seed, tensorboard_log=args.logdir, **extra)
            model.learn(args.timesteps, tb_log_name=f"{name}_seed{seed}")
            mean, std = evaluate_policy(model, Monitor(gym.make(args.env)), n_eval_episodes=20, deterministic=False)
            results[name].append(mean)
            extra_info = ""
            if isinstance(model, InfluencePPO) and model.last_influence is not None:
                report = model.last_influence
                extra_info = (
                    f"  (last iteration: dropped {report.n_dropped}/{report.scores.size}, scoring {report.seconds:.3f}s)"
                )
            print(f"{name:>13} seed {seed}: eval return {mean:7.1f} +- {std:5.1f}{extra_info}", flush=True)
    for name, values in results.items():
        print(f"{name:>13}: mean eval return over seeds {sum(values) / len(values):.1f}")
    print(f"TensorBoard logs: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
