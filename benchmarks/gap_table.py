"""
Where the gap to the paper's SE_ave comes from: every measured difference, ranked (RESULTS.md, issue 9).

Each row compares two ways of measuring or running the same seeds: a baseline and a change, each a pair of PPO and
IIF runs (``FOLDER::LABEL`` of the runner's CSVs). Per seed it computes SE_ave (or, where the change is the metric
itself, the SE over PPO's 10-90% levels), then the paired difference of the change against the baseline, with a
95% BCa interval over seeds. Rows are ranked by the size of the difference. Usage::

    python benchmarks/gap_table.py
"""

import functools
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


@functools.cache
def _folder(folder: str) -> dict:
    """Every run of a results folder, read once however many rows use it."""
    return load_runs(f"{B}/{folder}")


def _runs(spec: str) -> dict:
    folder, _, label = spec.partition("::")
    by_label = _folder(folder)
    if label not in by_label:
        raise SystemExit(f"{folder} has no runs labelled {label!r}; it has {sorted(by_label)}")
    return by_label[label]


def _per_seed(arm: Arm, seeds: tuple[int, ...]) -> np.ndarray:
    ppo, iif = _runs(arm.ppo), _runs(arm.iif)
    return np.array([arm.metric(curve(ppo[s]), curve(iif[s])) for s in seeds]) * 100


def _vs_ppo(ppo_folder: str, iif: str = "", metric: Callable[[np.ndarray, np.ndarray], float] = se_ave) -> Arm:
    """PPO's runs of ``ppo_folder`` against ``iif`` (``FOLDER::LABEL``; default: the paper's rule in the same folder)."""
    return Arm(f"{ppo_folder}::ppo", iif or f"{ppo_folder}::influence_ppo", metric)


MG, FL, AC, LL = "MiniGrid-Empty-8x8-v0", "FrozenLake-v1", "Acrobot-v1", "LunarLander-v3"
ALL_SEEDS, HELD_OUT_FL = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
ROWS = [
    Row(
        MG,
        "evaluation episodes 20 → 100 (same policies)",
        "measurement",
        ALL_SEEDS,
        _vs_ppo(f"results/{MG}"),
        _vs_ppo(f"results_eval100/{MG}"),
    ),
    Row(
        MG,
        "SE_ave → SE over PPO's 10-90% levels (100 episodes)",
        "metric",
        ALL_SEEDS,
        _vs_ppo(f"results_eval100/{MG}"),
        _vs_ppo(f"results_eval100/{MG}", metric=se_band),
    ),
    Row(
        MG,
        "scores of the policy term alone (the paper's code)",
        "protocol",
        ALL_SEEDS,
        _vs_ppo(f"results_eval100/{MG}"),
        _vs_ppo(f"results_eval100/{MG}", f"results_eval100/{MG}::influence_ppo:influence_loss=policy"),
    ),
    Row(
        MG,
        "Ã standardised per minibatch in the scores (the paper's code)",
        "protocol",
        (0, 1),
        _vs_ppo(f"results_eval100/{MG}"),
        _vs_ppo(f"results_eval100/{MG}", f"results_advnorm/{MG}::influence_ppo:influence_advantage_norm=minibatch"),
    ),
    Row(
        FL,
        "SE_ave → SE over PPO's 10-90% levels (1000 episodes)",
        "metric",
        ALL_SEEDS,
        _vs_ppo(f"results_eval1000/{FL}"),
        _vs_ppo(f"results_eval1000/{FL}", metric=se_band),
    ),
    Row(
        FL,
        "evaluation episodes 100 → 1000 (same policies)",
        "measurement",
        ALL_SEEDS,
        _vs_ppo(f"results/{FL}"),
        _vs_ppo(f"results_eval1000/{FL}"),
    ),
    Row(
        FL,
        "Ã standardised per minibatch in the scores (fixed test set)",
        "protocol",
        (5, 6, 7, 8, 9),
        _vs_ppo(f"results_fixed_eval/{FL}"),
        _vs_ppo(
            f"results_fixed_eval/{FL}", f"results_advnorm_fixed_eval/{FL}::influence_ppo:influence_advantage_norm=minibatch"
        ),
    ),
    Row(
        FL,
        "the default rule instead of the paper's (fixed test set)",
        "rule",
        HELD_OUT_FL,
        _vs_ppo(f"results_fixed_eval/{FL}"),
        _vs_ppo(f"results_fixed_eval/{FL}", f"results_minfrac_fixed_eval/{FL}::{DEFAULT}"),
    ),
    Row(
        AC,
        "evaluation episodes 10 → 100 (same policies)",
        "measurement",
        ALL_SEEDS,
        _vs_ppo(f"results_eval10/{AC}"),
        _vs_ppo(f"results/{AC}"),
    ),
    Row(
        AC,
        "Ã standardised per minibatch in the scores (fixed test set)",
        "protocol",
        (10, 11, 12, 13, 14),
        _vs_ppo(f"results_fixed_eval/{AC}"),
        _vs_ppo(
            f"results_fixed_eval/{AC}", f"results_advnorm_fixed_eval/{AC}::influence_ppo:influence_advantage_norm=minibatch"
        ),
    ),
    Row(
        AC,
        "the default rule instead of the paper's (its gate: no drop before the first success)",
        "rule",
        tuple(range(10)),
        _vs_ppo(f"results/{AC}"),
        _vs_ppo(f"results/{AC}", f"results_minfrac/{AC}::{DEFAULT}"),
    ),
    Row(
        FL,
        "the default rule ranking by plain instead of cross-fitted scores (fixed test set)",
        "rule",
        HELD_OUT_FL,
        _vs_ppo(f"results_fixed_eval/{FL}", f"results_minfrac_fixed_eval/{FL}::{DEFAULT}"),
        _vs_ppo(f"results_fixed_eval/{FL}", f"results_plainrank_fixed_eval/{FL}::{DEFAULT}"),
    ),
    Row(
        LL,
        "the default rule instead of the paper's (full budget, fixed test set)",
        "rule",
        ALL_SEEDS,
        _vs_ppo(f"results_lunar_full/{LL}"),
        _vs_ppo(f"results_lunar_full/{LL}", f"results_lunar_full/{LL}::{DEFAULT}"),
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
