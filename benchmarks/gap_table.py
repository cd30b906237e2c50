"""
Where the gap to the paper's SE_ave comes from: every measured difference, ranked (RESULTS.md, issue 9).

Each row compares two ways of measuring or running the same seeds: a baseline and a change, each a pair of PPO and
IIF runs (``FOLDER::LABEL`` of the runner's CSVs). Per seed it computes SE_ave (or, where the change is the metric
itself, the SE over PPO's 10-90% levels), then the paired difference of the change against the baseline, with a
95% BCa interval over seeds. Rows are ranked by the size of the difference. Usage::

    python benchmarks/gap_table.py
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sb3_influence.benchmark.metrics import se_ave, se_band
from sb3_influence.benchmark.plots import curve, load_runs
from sb3_influence.benchmark.stats import paired_difference

B = "benchmarks"
DEFAULT = (
    "influence_ppo:filter_mode=reliability,filter_fraction=0.5,filter_min_fraction=0.125,filter_min_reliability=-1000000000.0"
)


@dataclass(frozen=True)
class Arm:
    """A PPO run set and an IIF run set, both ``FOLDER::LABEL``, and the metric of the pair."""

    ppo: str
    iif: str
    metric: Callable[[np.ndarray, np.ndarray], float] = se_ave


@dataclass(frozen=True)
class Row:
    env: str
    change: str
    kind: str
    seeds: tuple[int, ...]
    baseline: Arm
    variant: Arm


def _runs(spec: str) -> dict:
    folder, _, label = spec.partition("::")
    by_label = load_runs(f"{B}/{folder}")
    if label not in by_label:
        raise SystemExit(f"{folder} has no runs labelled {label!r}; it has {sorted(by_label)}")
    return by_label[label]


def _per_seed(arm: Arm, seeds: tuple[int, ...]) -> np.ndarray:
    ppo, iif = _runs(arm.ppo), _runs(arm.iif)
    return np.array([arm.metric(curve(ppo[s]), curve(iif[s])) for s in seeds]) * 100


ROWS = [
    Row(
        "MiniGrid-Empty-8x8-v0",
        "evaluation episodes 20 → 100 (same policies)",
        "measurement",
        (0, 1, 2, 3, 4),
        Arm("results/MiniGrid-Empty-8x8-v0::ppo", "results/MiniGrid-Empty-8x8-v0::influence_ppo"),
        Arm("results_eval100/MiniGrid-Empty-8x8-v0::ppo", "results_eval100/MiniGrid-Empty-8x8-v0::influence_ppo"),
    ),
    Row(
        "MiniGrid-Empty-8x8-v0",
        "SE_ave → SE over PPO's 10-90% levels (100 episodes)",
        "metric",
        (0, 1, 2, 3, 4),
        Arm("results_eval100/MiniGrid-Empty-8x8-v0::ppo", "results_eval100/MiniGrid-Empty-8x8-v0::influence_ppo"),
        Arm(
            "results_eval100/MiniGrid-Empty-8x8-v0::ppo",
            "results_eval100/MiniGrid-Empty-8x8-v0::influence_ppo",
            se_band,
        ),
    ),
    Row(
        "MiniGrid-Empty-8x8-v0",
        "scores of the policy term alone (the paper's code)",
        "protocol",
        (0, 1, 2, 3, 4),
        Arm("results_eval100/MiniGrid-Empty-8x8-v0::ppo", "results_eval100/MiniGrid-Empty-8x8-v0::influence_ppo"),
        Arm(
            "results_eval100/MiniGrid-Empty-8x8-v0::ppo",
            "results_eval100/MiniGrid-Empty-8x8-v0::influence_ppo:influence_loss=policy",
        ),
    ),
    Row(
        "MiniGrid-Empty-8x8-v0",
        "Ã standardised per minibatch in the scores (the paper's code)",
        "protocol",
        (0, 1),
        Arm("results_eval100/MiniGrid-Empty-8x8-v0::ppo", "results_eval100/MiniGrid-Empty-8x8-v0::influence_ppo"),
        Arm(
            "results_eval100/MiniGrid-Empty-8x8-v0::ppo",
            "results_advnorm/MiniGrid-Empty-8x8-v0::influence_ppo:influence_advantage_norm=minibatch",
        ),
    ),
    Row(
        "FrozenLake-v1",
        "SE_ave → SE over PPO's 10-90% levels (1000 episodes)",
        "metric",
        (0, 1, 2, 3, 4),
        Arm("results_eval1000/FrozenLake-v1::ppo", "results_eval1000/FrozenLake-v1::influence_ppo"),
        Arm("results_eval1000/FrozenLake-v1::ppo", "results_eval1000/FrozenLake-v1::influence_ppo", se_band),
    ),
    Row(
        "FrozenLake-v1",
        "evaluation episodes 100 → 1000 (same policies)",
        "measurement",
        (0, 1, 2, 3, 4),
        Arm("results/FrozenLake-v1::ppo", "results/FrozenLake-v1::influence_ppo"),
        Arm("results_eval1000/FrozenLake-v1::ppo", "results_eval1000/FrozenLake-v1::influence_ppo"),
    ),
    Row(
        "FrozenLake-v1",
        "Ã standardised per minibatch in the scores (fixed test set)",
        "protocol",
        (5, 6, 7, 8, 9),
        Arm("results_fixed_eval/FrozenLake-v1::ppo", "results_fixed_eval/FrozenLake-v1::influence_ppo"),
        Arm(
            "results_fixed_eval/FrozenLake-v1::ppo",
            "results_advnorm_fixed_eval/FrozenLake-v1::influence_ppo:influence_advantage_norm=minibatch",
        ),
    ),
    Row(
        "FrozenLake-v1",
        "the default rule instead of the paper's (fixed test set)",
        "rule",
        (5, 6, 7, 8, 9, 10, 11, 12, 13, 14),
        Arm("results_fixed_eval/FrozenLake-v1::ppo", "results_fixed_eval/FrozenLake-v1::influence_ppo"),
        Arm("results_fixed_eval/FrozenLake-v1::ppo", f"results_minfrac_fixed_eval/FrozenLake-v1::{DEFAULT}"),
    ),
    Row(
        "Acrobot-v1",
        "evaluation episodes 10 → 100 (same policies)",
        "measurement",
        (0, 1, 2, 3, 4),
        Arm("results_eval10/Acrobot-v1::ppo", "results_eval10/Acrobot-v1::influence_ppo"),
        Arm("results/Acrobot-v1::ppo", "results/Acrobot-v1::influence_ppo"),
    ),
    Row(
        "Acrobot-v1",
        "Ã standardised per minibatch in the scores (fixed test set)",
        "protocol",
        (10, 11, 12, 13, 14),
        Arm("results_fixed_eval/Acrobot-v1::ppo", "results_fixed_eval/Acrobot-v1::influence_ppo"),
        Arm(
            "results_fixed_eval/Acrobot-v1::ppo",
            "results_advnorm_fixed_eval/Acrobot-v1::influence_ppo:influence_advantage_norm=minibatch",
        ),
    ),
    Row(
        "Acrobot-v1",
        "the default rule instead of the paper's (its gate: no drop before the first success)",
        "rule",
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        Arm("results/Acrobot-v1::ppo", "results/Acrobot-v1::influence_ppo"),
        Arm("results/Acrobot-v1::ppo", f"results_minfrac/Acrobot-v1::{DEFAULT}"),
    ),
    Row(
        "FrozenLake-v1",
        "the default rule ranking by plain instead of cross-fitted scores (fixed test set)",
        "rule",
        (5, 6, 7, 8, 9, 10, 11, 12, 13, 14),
        Arm("results_fixed_eval/FrozenLake-v1::ppo", f"results_minfrac_fixed_eval/FrozenLake-v1::{DEFAULT}"),
        Arm("results_fixed_eval/FrozenLake-v1::ppo", f"results_plainrank_fixed_eval/FrozenLake-v1::{DEFAULT}"),
    ),
    Row(
        "LunarLander-v3",
        "the default rule instead of the paper's (full budget, fixed test set)",
        "rule",
        (0, 1, 2, 3, 4),
        Arm("results_lunar_full/LunarLander-v3::ppo", "results_lunar_full/LunarLander-v3::influence_ppo"),
        Arm("results_lunar_full/LunarLander-v3::ppo", f"results_lunar_full/LunarLander-v3::{DEFAULT}"),
    ),
]


def main() -> None:
    print("| rank | env | change | kind | seeds | SE_ave before → after | difference [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for row in ROWS:
        try:
            before, after = _per_seed(row.baseline, row.seeds), _per_seed(row.variant, row.seeds)
        except KeyError as error:  # a seed not run (yet)
            print(f"<!-- {row.env}: {row.change}: seed {error} missing -->")
            continue
        results.append((row, before, after, paired_difference(after, before)))
    results.sort(key=lambda item: -abs(item[3].mean))
    for rank, (row, before, after, d) in enumerate(results, start=1):
        seeds = f"{row.seeds[0]}-{row.seeds[-1]}" if len(row.seeds) > 1 else str(row.seeds[0])
        print(
            f"| {rank} | {row.env} | {row.change} | {row.kind} | {seeds} | {before.mean():.1f}% → {after.mean():.1f}% "
            f"| {d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}] |"
        )


if __name__ == "__main__":
    main()
