"""
How the number of evaluation episodes biases SE_ave / SE_peak: a simulation on model learning curves.

The paper evaluates with 1000 episodes per iteration; a CPU-bound re-run uses fewer. This script asks what
SE_ave and SE_peak (``sb3_influence.benchmark.metrics``) report for a *known* true sample-efficiency gain when the
curves are estimated from ``n`` episodes. The IIF curve is the PPO curve run ``1 / (1 - s)`` times faster
(true reduction ``s`` at every level); each iteration's evaluation is the mean of ``n`` episode returns drawn
around the true curve. Two model curves:

- ``success``: a logistic success rate (0 -> 1), Bernoulli episodes (FrozenLake / MiniGrid-like);
- ``plateau``: a return that rises from -500 to about -85 in ~10 iterations and then creeps up by 10 over the
  rest of the run, Gaussian episodes with per-episode std 150 while learning and 20 on the plateau (Acrobot-like,
  the std read off our Acrobot CSVs' ``eval_std``).

Usage::

    python benchmarks/metric_noise.py --reps 2000 --output benchmarks/metric_noise.md
"""

import argparse
import platform
import sys

import numpy as np

from sb3_influence.benchmark.metrics import se_ave, se_peak
from sb3_influence.benchmark.runner import cpu_name


def success_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = 1.0 / (1.0 + np.exp(-(t - 15.0) / 4.0))
    return p, np.sqrt(p * (1.0 - p))


def plateau_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rise = 1.0 - np.exp(-np.maximum(t - 2.0, 0.0) / 3.0)
    mean = -500.0 + 415.0 * rise + 10.0 * np.clip((t - 10.0) / 40.0, 0.0, 1.0)
    std = 20.0 + 130.0 * (1.0 - rise)
    return mean, std


CURVES = {"success": (success_curve, True), "plateau": (plateau_curve, False)}


def evaluate(mean: np.ndarray, std: np.ndarray, n: int | None, bernoulli: bool, rng: np.random.Generator) -> np.ndarray:
    if n is None:  # infinitely many episodes: the true curve
        return mean
    if bernoulli:
        return rng.binomial(n, mean) / n
    return mean + std / np.sqrt(n) * rng.standard_normal(mean.shape)


def simulate(curve: str, s: float, iterations: int, n: int | None, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    fn, bernoulli = CURVES[curve]
    t = np.arange(1, iterations + 1, dtype=float)
    ppo_mean, ppo_std = fn(t)
    iif_mean, iif_std = fn(t / (1.0 - s))
    rng = np.random.default_rng(seed)
    ave, peak = [], []
    for _ in range(1 if n is None else reps):
        ppo = evaluate(ppo_mean, ppo_std, n, bernoulli, rng)
        iif = evaluate(iif_mean, iif_std, n, bernoulli, rng)
        ave.append(se_ave(ppo, iif))
        peak.append(se_peak(ppo, iif))
    return np.array(ave), np.array(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--reps", type=int, default=2000, help="simulated runs per cell")
    parser.add_argument("--true-se", type=float, nargs="+", default=[0.2, 0.35, 0.5], help="true reductions s")
    parser.add_argument("--episodes", type=int, nargs="+", default=[10, 20, 100, 1000], help="evaluation episodes n")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the markdown here")
    args = parser.parse_args()

    lines = [
        "# SE_ave / SE_peak measured from n evaluation episodes, for a known true reduction s",
        "",
        f"Command: `python benchmarks/metric_noise.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {cpu_name()}, Python {platform.python_version()}, numpy {np.__version__}. "
        f"{args.iterations} iterations; mean ± sd over {args.reps} simulated seed pairs "
        "(the sd is the spread of a single seed; divide by √5 for a 5-seed standard error).",
        "",
        "| curve | true s | metric | n = ∞ (true curves) | " + " | ".join(f"n = {n}" for n in args.episodes) + " |",
        "|---|---|---|---|" + "---|" * len(args.episodes),
    ]
    for curve in CURVES:
        for s in args.true_se:
            cells: dict[str, list[str]] = {"SE_ave": [], "SE_peak": []}
            for n in [None, *args.episodes]:
                ave, peak = simulate(curve, s, args.iterations, n, args.reps, args.seed)
                for name, values in (("SE_ave", ave), ("SE_peak", peak)):
                    spread = "" if n is None else f" ± {100 * values.std():.1f}"
                    cells[name].append(f"{100 * values.mean():.1f}{spread}%")
            for name, row in cells.items():
                lines.append(f"| {curve} | {s:.2f} | {name} | " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
