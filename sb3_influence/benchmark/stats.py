"""
The statistics of paired RL comparisons: paired differences with BCa bootstrap intervals (scipy), and rliable's
probability of improvement and interquartile mean with stratified-bootstrap intervals (Agarwal et al. 2021).
Used by the panel and by ``summarize``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedDifference", "across_tasks", "iqm", "paired_difference", "probability_of_improvement"]


@dataclass(frozen=True)
class PairedDifference:
    """
    Mean paired difference (variant minus baseline) over seeds, with a 95% BCa bootstrap interval.

    :param mean: The mean difference.
    :param low: The interval's lower end.
    :param high: The interval's upper end.
    :param n: Number of seed pairs.
    """

    mean: float
    low: float
    high: float
    n: int


def paired_difference(
    variant: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, seed: int = 0
) -> PairedDifference:
    """
    Mean of ``variant - baseline`` (paired by seed) and its 95% BCa bootstrap confidence interval (scipy).

    :param variant: Values of the variant, one per seed.
    :param baseline: Values of the baseline for the same seeds.
    :param seed: The bootstrap's seed.
    :return: The paired difference.
    """
    from scipy.stats import bootstrap

    diff = np.asarray(variant, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if diff.size < 2 or np.ptp(diff) <= 1e-12 * max(1.0, float(np.abs(diff).max())):  # no spread: a point interval
        mean = float(diff.mean()) if diff.size else float("nan")
        return PairedDifference(mean, mean, mean, int(diff.size))
    result = bootstrap((diff,), np.mean, confidence_level=0.95, method="BCa", n_resamples=5000, random_state=seed)
    low, high = result.confidence_interval
    return PairedDifference(float(diff.mean()), float(low), float(high), int(diff.size))


def probability_of_improvement(variant: np.ndarray, baseline: np.ndarray, reps: int = 2000) -> tuple[float, float, float]:
    """
    rliable's probability of improvement P(variant > baseline) and its stratified-bootstrap 95% interval.

    :param variant: Scores ``(n_seeds, n_tasks)``.
    :param baseline: Scores ``(n_seeds, n_tasks)`` (the same seeds).
    :param reps: Bootstrap repetitions.
    :return: ``(probability, low, high)``.
    """
    from rliable import library as rly
    from rliable import metrics

    point, interval = rly.get_interval_estimates(
        {"pair": (np.asarray(variant), np.asarray(baseline))}, metrics.probability_of_improvement, reps=reps
    )
    low, high = np.ravel(interval["pair"])
    return float(np.ravel(point["pair"])[0]), float(low), float(high)


def iqm(scores: dict[str, np.ndarray], reps: int = 2000) -> dict[str, tuple[float, float, float]]:
    """
    rliable's interquartile mean of normalised scores per method, with stratified-bootstrap 95% intervals.

    :param scores: ``{method: (n_seeds, n_tasks)}``.
    :param reps: Bootstrap repetitions.
    :return: ``{method: (iqm, low, high)}``.
    """
    from rliable import library as rly
    from rliable import metrics

    point, interval = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    return {name: (float(point[name][0]), float(interval[name][0, 0]), float(interval[name][1, 0])) for name in scores}


def across_tasks(
    normalised: Mapping[str, Mapping[str, Mapping[int, float]]], baseline: str
) -> tuple[list[str], int, dict[str, tuple[float, float, float, tuple[float, float, float] | None]]] | None:
    """
    The aggregate over tasks: rliable's IQM of each variant's normalised scores and P(variant > baseline), for the
    variants run on every task of the baseline, with the seeds they all share (at least 2).

    :param normalised: ``{variant: {task: {seed: normalised score}}}``.
    :param baseline: The baseline variant.
    :return: ``(tasks, n_seeds, {variant: (iqm, low, high, P or None for the baseline)})``, or ``None`` when there is
        nothing to aggregate (fewer than 2 tasks, or no variant besides the baseline).
    """
    tasks = sorted(normalised.get(baseline, {}))
    matrices: dict[str, np.ndarray] = {}
    for label, by_task in normalised.items():
        if sorted(by_task) != tasks or len(tasks) < 2:
            continue
        seeds = sorted(set.intersection(*(set(by_task[t]) & set(normalised[baseline][t]) for t in tasks)))
        if len(seeds) >= 2:
            matrices[label] = np.array([[by_task[t][s] for t in tasks] for s in seeds])
    if baseline not in matrices or len(matrices) < 2:
        return None
    n_seeds = min(m.shape[0] for m in matrices.values())
    matrices = {label: m[:n_seeds] for label, m in matrices.items()}
    rows = {
        label: (
            *estimate,
            None if label == baseline else probability_of_improvement(matrices[label], matrices[baseline]),
        )
        for label, estimate in iqm(matrices).items()
    }
    return tasks, n_seeds, rows  # type: ignore[return-value]
