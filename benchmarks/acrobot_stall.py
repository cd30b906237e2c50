"""
Why IIF sometimes stalls on Acrobot before its first success: per-iteration rollout facts for PPO and IIF.

Builds the benchmark runner's models (same config, same seed, same initial weights) and prints, for every rollout:
the episodes that ended in it and how many reached the goal (length < 500), the policy entropy averaged over the
rollout's states, the fraction of negatively scored records and the Spearman correlation of the scores with the
raw advantages. Usage::

    python benchmarks/acrobot_stall.py --seed 5 --iterations 8
"""

import argparse

import numpy as np
import torch as th
from scipy.stats import spearmanr
from stable_baselines3.common.callbacks import BaseCallback

from sb3_influence.benchmark.runner import build_model, load_hyperparams, resolve_config
from sb3_influence.scoring import model_influence_scores

ENV_ID = "Acrobot-v1"


class RolloutFacts(BaseCallback):
    """Print one line of facts per rollout (before the update)."""

    def _on_rollout_start(self) -> None:
        self.lengths: list[int] = []

    def _on_step(self) -> bool:
        self.lengths += [int(info["episode"]["l"]) for info in self.locals["infos"] if "episode" in info]
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = th.as_tensor(buffer.observations.reshape(buffer.buffer_size * buffer.n_envs, -1))
        with th.no_grad():
            entropy = float(self.model.policy.get_distribution(obs).entropy().mean())
        scores, advantages = model_influence_scores(self.model).ravel(), buffer.advantages.ravel()
        goals = sum(length < 500 for length in self.lengths)
        print(
            f"  rollout {self.model.num_timesteps // buffer.buffer_size:2d}: episodes {len(self.lengths):2d}, "
            f"goal {goals:2d}, "
            f"entropy {entropy:.3f}, negative scores {np.mean(scores < 0):.2f}, "
            f"spearman(I, A) {spearmanr(scores, advantages)[0]:+.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=8)
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"Command: python benchmarks/acrobot_stall.py --seed {args.seed} --iterations {args.iterations}")
    for algo in ("ppo", "influence_ppo"):
        print(algo)
        hyperparams = load_hyperparams(resolve_config(algo), ENV_ID)
        model = build_model(algo, ENV_ID, hyperparams, args.seed)
        model.learn(args.iterations * model.n_steps, callback=RolloutFacts())


if __name__ == "__main__":
    main()
