"""
InfluenceA2C (default adaptive rule) against A2C at SB3-test budgets: SB3's ``test_identity.py`` settings (gamma 0.4,
lr 2e-3, 1200 steps, A2C's 5-step rollouts) on the three discrete identity envs, 10 paired seeds, the final policy's
mean return on a fixed test set of 20 episodes. Prints paired differences (95% BCa) and writes a JSON of the raw
numbers. Usage::

    python benchmarks/a2c_identity.py --output benchmarks/a2c_identity.json
"""

import argparse
import json
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_influence import InfluenceA2C
from sb3_influence.benchmark.evaluation import evaluate_fixed
from sb3_influence.benchmark.stats import paired_difference

ENVS: dict[str, Any] = {
    "discrete": lambda: IdentityEnv(4),
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(4),
    "multibinary": lambda: IdentityEnvMultiBinary(4),
}


def run(cls: type, make: Any, seed: int) -> tuple[float, float]:
    """Train one model; return its final mean test return and the fraction of records it dropped."""
    model = cls("MlpPolicy", DummyVecEnv([make]), gamma=0.4, learning_rate=0.002, seed=seed)
    counts = [0, 0]
    if isinstance(model, InfluenceA2C):
        step = model._filter_rollout

        def counting() -> Any:
            report = step()
            counts[0] += report.n_dropped
            counts[1] += report.kept.size
            return report

        model._filter_rollout = counting  # type: ignore[method-assign]
    model.learn(1200)
    return evaluate_fixed(model, DummyVecEnv([make]), 20, 1000 + seed), counts[0] / max(counts[1], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    out: dict[str, Any] = {}
    for name, make in ENVS.items():
        for cls in (A2C, InfluenceA2C):
            results = [run(cls, make, seed) for seed in range(args.seeds)]
            out[f"{name}/{cls.__name__}"] = ([r[0] for r in results], [r[1] for r in results])
        base, iif = (np.array(out[f"{name}/{c}"][0]) for c in ("A2C", "InfluenceA2C"))
        d = paired_difference(iif, base)
        dropped = np.mean(out[f"{name}/InfluenceA2C"][1])
        print(
            f"{name}: A2C {base.mean():.2f}, InfluenceA2C {iif.mean():.2f}, Δ {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}], "
            f"dropped {100 * dropped:.1f}%",
            flush=True,
        )
    if args.output:
        with open(args.output, "w") as file:
            json.dump(out, file)


if __name__ == "__main__":
    main()
