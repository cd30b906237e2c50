"""Sample-efficiency and run-time metrics comparing a PPO learning curve with an IIF learning curve.

Definitions (docs page "Metrics and the paper's results"). A learning curve is a 1-D sequence of evaluated returns
at iterations ``1..T``: index ``0`` of the array is iteration ``1``. The PPO and IIF curves may have different lengths.

- ``m_X(v)``: the first iteration (1-based) at which method X's evaluated return reaches level ``v``,
  i.e. ``return >= v`` (reaching the level exactly counts).
- SE at level ``v``: ``1 - m_IIF(v) / m_PPO(v)``.
- SE_ave: the mean of SE over the successive new bests of the PPO curve, i.e. the values of PPO's running
  maximum each time it strictly increases (the first point is the first best). PPO first reaches each such
  level at that very iteration.
- SE_peak: SE at PPO's peak return (the maximum of the PPO curve).
- RT_peak: ``1 - t_IIF(peak) / t_PPO(T_PPO)``, with ``t_IIF(peak)`` the IIF cumulative wall-clock time at the
  end of iteration ``m_IIF(peak)`` and ``t_PPO(T_PPO)`` the PPO cumulative wall-clock time of the whole run.

**Never-reached convention.** When the IIF curve never reaches a level ``v`` within its ``T_IIF``
iterations, the default (``never_reached="penalise"``) treats it as reached one iteration past its budget:
``m_IIF(v) = T_IIF + 1``. SE stays finite but is penalised (it is at most ``1 - (T_IIF + 1) / m_PPO(v)``,
negative whenever ``T_IIF >= m_PPO(v)``). For RT_peak the matching time is the IIF run time extrapolated by one
mean iteration: ``t_IIF = t_IIF(T_IIF) * (T_IIF + 1) / T_IIF``. With ``never_reached="nan"`` such a level's
SE (and RT_peak) is ``nan`` instead, which then propagates into SE_ave. A level PPO itself never reaches has
no defined SE: :func:`sample_efficiency` raises ``ValueError`` for it (this never happens for the levels
SE_ave and SE_peak use).

Only numpy is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

ArrayLike1D = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]
NeverReached = Literal["penalise", "nan"]

__all__ = [
    "Aggregate",
    "NeverReached",
    "SeedMetrics",
    "aggregate",
    "compute_metrics",
    "first_reach",
    "format_pct",
    "new_best_levels",
    "rt_peak",
    "sample_efficiency",
    "se_ave",
    "se_band",
    "se_peak",
]

_NEVER_REACHED_CHOICES = ("penalise", "nan")


# ---------------------------------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------------------------------


def _as_curve(values: ArrayLike1D, name: str) -> npt.NDArray[np.float64]:
    """Convert to a non-empty, finite, 1-D float64 array or raise ``ValueError``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains a non-finite value ({arr[bad]}) at index {bad}")
    return arr


def _as_seconds(seconds: ArrayLike1D, curve: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float64]:
    """Validate a cumulative wall-clock array: same length as its curve, non-negative, non-decreasing."""
    arr = _as_curve(seconds, name)
    if arr.shape != curve.shape:
        raise ValueError(f"{name} has length {arr.size} but its curve has length {curve.size}; one entry per iteration")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative cumulative seconds")
    if np.any(np.diff(arr) < 0):
        bad = int(np.flatnonzero(np.diff(arr) < 0)[0])
        raise ValueError(
            f"{name} must be cumulative (non-decreasing) seconds, but decreases from {arr[bad]} to {arr[bad + 1]} "
            f"between iterations {bad + 1} and {bad + 2}"
        )
    return arr


def _check_level(level: float) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"level must be a number: {exc}") from exc
    if not np.isfinite(value):
        raise ValueError(f"level must be finite, got {value}")
    return value


def _check_never_reached(never_reached: str) -> None:
    if never_reached not in _NEVER_REACHED_CHOICES:
        raise ValueError(f"never_reached must be one of {_NEVER_REACHED_CHOICES}, got {never_reached!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Per-seed metrics
# ---------------------------------------------------------------------------------------------------------------------


def _first_reach(curve: npt.NDArray[np.float64], level: float) -> int | None:
    hits = np.flatnonzero(curve >= level)
    return int(hits[0]) + 1 if hits.size else None


def first_reach(curve: ArrayLike1D, level: float) -> int | None:
    """First iteration (1-based) at which ``curve`` reaches ``level`` (``curve[i] >= level``).

    :param curve: evaluated returns at iterations ``1..T`` (index 0 is iteration 1).
    :param level: the return level to reach; reaching it exactly counts.
    :return: the 1-based iteration, or ``None`` if the curve never reaches ``level``.
    """
    return _first_reach(_as_curve(curve, "curve"), _check_level(level))


def new_best_levels(curve: ArrayLike1D) -> npt.NDArray[np.float64]:
    """The successive new bests of a curve: its running maximum each time it strictly increases.

    The first point is always the first best, so the result is non-empty and strictly increasing.

    :param curve: evaluated returns at iterations ``1..T``.
    :return: the levels ``v_1 < v_2 < ...``.
    """
    arr = _as_curve(curve, "curve")
    running = np.maximum.accumulate(arr)
    is_new = np.empty(arr.size, dtype=bool)
    is_new[0] = True
    is_new[1:] = running[1:] > running[:-1]
    return running[is_new]


def _iif_iteration(iif: npt.NDArray[np.float64], level: float, never_reached: NeverReached) -> float:
    """``m_IIF(level)`` under the never-reached convention (``nan`` or ``T_IIF + 1`` when not reached)."""
    m = _first_reach(iif, level)
    if m is not None:
        return float(m)
    return float("nan") if never_reached == "nan" else float(iif.size + 1)


def _se(ppo: npt.NDArray[np.float64], iif: npt.NDArray[np.float64], level: float, never_reached: NeverReached) -> float:
    m_ppo = _first_reach(ppo, level)
    if m_ppo is None:
        raise ValueError(f"PPO never reaches level {level} (its peak is {ppo.max()}), so SE is undefined there")
    return 1.0 - _iif_iteration(iif, level, never_reached) / m_ppo


def sample_efficiency(
    ppo_curve: ArrayLike1D,
    iif_curve: ArrayLike1D,
    level: float,
    *,
    never_reached: NeverReached = "penalise",
) -> float:
    """Sample efficiency at one level: ``1 - m_IIF(level) / m_PPO(level)``.

    :param ppo_curve: PPO's evaluated returns at iterations ``1..T_PPO``.
    :param iif_curve: IIF's evaluated returns at iterations ``1..T_IIF``.
    :param level: the return level; it must be reached by PPO.
    :param never_reached: what to do when IIF never reaches ``level``: ``"penalise"`` (default) uses
        ``m_IIF = T_IIF + 1``; ``"nan"`` returns ``nan``.
    :return: the sample-efficiency reduction (positive when IIF is faster).
    :raises ValueError: on invalid curves or when PPO never reaches ``level``.
    """
    _check_never_reached(never_reached)
    ppo = _as_curve(ppo_curve, "ppo_curve")
    iif = _as_curve(iif_curve, "iif_curve")
    return _se(ppo, iif, _check_level(level), never_reached)


def se_ave(ppo_curve: ArrayLike1D, iif_curve: ArrayLike1D, *, never_reached: NeverReached = "penalise") -> float:
    """Mean SE over the successive new bests of the PPO curve (see :func:`new_best_levels`).

    :param ppo_curve: PPO's evaluated returns at iterations ``1..T_PPO``.
    :param iif_curve: IIF's evaluated returns at iterations ``1..T_IIF``.
    :param never_reached: convention when IIF never reaches a level (see :func:`sample_efficiency`).
    :return: SE_ave.
    """
    _check_never_reached(never_reached)
    ppo = _as_curve(ppo_curve, "ppo_curve")
    iif = _as_curve(iif_curve, "iif_curve")
    return float(np.mean([_se(ppo, iif, float(v), never_reached) for v in new_best_levels(ppo)]))


def se_peak(ppo_curve: ArrayLike1D, iif_curve: ArrayLike1D, *, never_reached: NeverReached = "penalise") -> float:
    """SE at PPO's peak return (the maximum of the PPO curve).

    :param ppo_curve: PPO's evaluated returns at iterations ``1..T_PPO``.
    :param iif_curve: IIF's evaluated returns at iterations ``1..T_IIF``.
    :param never_reached: convention when IIF never reaches the peak (see :func:`sample_efficiency`).
    :return: SE_peak.
    """
    _check_never_reached(never_reached)
    ppo = _as_curve(ppo_curve, "ppo_curve")
    iif = _as_curve(iif_curve, "iif_curve")
    return _se(ppo, iif, float(ppo.max()), never_reached)


def se_band(
    ppo_curve: ArrayLike1D,
    iif_curve: ArrayLike1D,
    low: float = 0.1,
    high: float = 0.9,
    *,
    never_reached: NeverReached = "penalise",
) -> float:
    """Mean SE over the PPO new bests that lie between two fractions of PPO's range (not a metric of the paper).

    A level ``v`` is kept when ``low <= (v - min) / (max - min) <= high``, ``min`` and ``max`` being those of the
    PPO curve. With the default 10-90% band this leaves out the levels that evaluation noise creates around the
    initial policy's return and on the final plateau, where both methods' first-reach iterations are close to
    random; what remains measures the speed-up while PPO is actually learning.

    :param ppo_curve: PPO's evaluated returns at iterations ``1..T_PPO``.
    :param iif_curve: IIF's evaluated returns at iterations ``1..T_IIF``.
    :param low: the band's lower end, a fraction of PPO's range in ``[0, 1]``.
    :param high: the band's upper end, in ``[low, 1]``.
    :param never_reached: convention when IIF never reaches a level (see :func:`sample_efficiency`).
    :return: the mean SE over the band's levels, or ``nan`` when no new best lies in the band (a flat curve).
    :raises ValueError: on invalid curves or band.
    """
    _check_never_reached(never_reached)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    ppo = _as_curve(ppo_curve, "ppo_curve")
    iif = _as_curve(iif_curve, "iif_curve")
    span = float(ppo.max() - ppo.min())
    if span == 0.0:
        return float("nan")
    tol = 1e-9  # a level exactly on an end of the band stays in it despite rounding
    levels = [float(v) for v in new_best_levels(ppo) if low - tol <= (v - ppo.min()) / span <= high + tol]
    if not levels:
        return float("nan")
    return float(np.mean([_se(ppo, iif, v, never_reached) for v in levels]))


def rt_peak(
    ppo_curve: ArrayLike1D,
    iif_curve: ArrayLike1D,
    iif_seconds: ArrayLike1D,
    ppo_seconds: ArrayLike1D,
    *,
    never_reached: NeverReached = "penalise",
) -> float:
    """Run-time reduction at PPO's peak: ``1 - t_IIF(m_IIF(peak)) / t_PPO(T_PPO)``.

    If IIF never reaches PPO's peak, ``"penalise"`` (default) extrapolates IIF's run by one mean iteration,
    ``t_IIF = iif_seconds[-1] * (T_IIF + 1) / T_IIF``; ``"nan"`` returns ``nan``.

    :param ppo_curve: PPO's evaluated returns at iterations ``1..T_PPO``.
    :param iif_curve: IIF's evaluated returns at iterations ``1..T_IIF``.
    :param iif_seconds: IIF's cumulative wall-clock seconds at the end of each iteration (length ``T_IIF``).
    :param ppo_seconds: PPO's cumulative wall-clock seconds at the end of each iteration (length ``T_PPO``).
    :param never_reached: convention when IIF never reaches the peak.
    :return: RT_peak.
    :raises ValueError: on invalid inputs, or when PPO's total time is not positive.
    """
    _check_never_reached(never_reached)
    ppo = _as_curve(ppo_curve, "ppo_curve")
    iif = _as_curve(iif_curve, "iif_curve")
    iif_t = _as_seconds(iif_seconds, iif, "iif_seconds")
    ppo_t = _as_seconds(ppo_seconds, ppo, "ppo_seconds")
    ppo_total = float(ppo_t[-1])
    if ppo_total <= 0:
        raise ValueError(f"PPO's total wall-clock time must be positive, got {ppo_total}")
    m = _first_reach(iif, float(ppo.max()))
    if m is not None:
        iif_time = float(iif_t[m - 1])
    elif never_reached == "nan":
        return float("nan")
    else:
        iif_time = float(iif_t[-1]) * (iif.size + 1) / iif.size
    return 1.0 - iif_time / ppo_total


@dataclass(frozen=True)
class SeedMetrics:
    """The metrics of one seed (one PPO run against one IIF run).

    :param se_ave: SE_ave.
    :param se_peak: SE_peak.
    :param rt_peak: RT_peak, or ``None`` when no wall-clock times were given.
    """

    se_ave: float
    se_peak: float
    rt_peak: float | None


def compute_metrics(
    ppo_curve: ArrayLike1D,
    iif_curve: ArrayLike1D,
    ppo_seconds: ArrayLike1D | None = None,
    iif_seconds: ArrayLike1D | None = None,
    *,
    never_reached: NeverReached = "penalise",
) -> SeedMetrics:
    """SE_ave, SE_peak and (when both wall-clock arrays are given) RT_peak for one seed.

    :param ppo_curve: PPO's evaluated returns at iterations ``1..T_PPO``.
    :param iif_curve: IIF's evaluated returns at iterations ``1..T_IIF``.
    :param ppo_seconds: PPO's cumulative wall-clock seconds per iteration, or ``None``.
    :param iif_seconds: IIF's cumulative wall-clock seconds per iteration, or ``None``.
    :param never_reached: convention when IIF never reaches a level (see the module docstring).
    :return: the seed's :class:`SeedMetrics`.
    :raises ValueError: on invalid inputs, or when only one of the two wall-clock arrays is given.
    """
    if (ppo_seconds is None) != (iif_seconds is None):
        raise ValueError("give both ppo_seconds and iif_seconds, or neither")
    rt: float | None = None
    if ppo_seconds is not None and iif_seconds is not None:
        rt = rt_peak(ppo_curve, iif_curve, iif_seconds, ppo_seconds, never_reached=never_reached)
    return SeedMetrics(
        se_ave=se_ave(ppo_curve, iif_curve, never_reached=never_reached),
        se_peak=se_peak(ppo_curve, iif_curve, never_reached=never_reached),
        rt_peak=rt,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation over seeds
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """Summary of one metric over seeds.

    :param mean: the mean.
    :param stderr: the standard error of the mean, ``std(ddof=1) / sqrt(n)`` (``0.0`` when ``n == 1``).
    :param ci_low: lower end of the percentile-bootstrap confidence interval of the mean.
    :param ci_high: upper end of the percentile-bootstrap confidence interval of the mean.
    :param n: the number of values.
    """

    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int


def aggregate(values: ArrayLike1D, n_bootstrap: int = 10000, confidence: float = 0.95, seed: int = 0) -> Aggregate:
    """Mean, standard error and percentile-bootstrap confidence interval of the mean.

    The bootstrap resamples ``values`` with replacement ``n_bootstrap`` times using
    ``numpy.random.default_rng(seed)``, so the interval is deterministic for a given ``seed``.

    :param values: one value per seed (1-D, non-empty, finite).
    :param n_bootstrap: number of bootstrap resamples (at least 1).
    :param confidence: the interval's confidence level, in ``(0, 1)``.
    :param seed: seed of the bootstrap's random generator.
    :return: the :class:`Aggregate`.
    :raises ValueError: on invalid ``values``, ``n_bootstrap`` or ``confidence``.
    """
    arr = _as_curve(values, "values")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = int(arr.size)
    mean = float(arr.mean())
    stderr = float(arr.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    rng = np.random.default_rng(seed)
    boot_means = np.empty(int(n_bootstrap), dtype=np.float64)
    chunk = max(1, 1_000_000 // n)  # bound memory to about a million indices at a time
    for start in range(0, int(n_bootstrap), chunk):
        stop = min(start + chunk, int(n_bootstrap))
        idx = rng.integers(0, n, size=(stop - start, n))
        boot_means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    ci_low, ci_high = (float(q) for q in np.quantile(boot_means, [alpha, 1.0 - alpha]))
    if np.ptp(arr) == 0.0:  # a constant sample (n == 1 included): no spread, and no rounding noise either
        ci_low = ci_high = mean
    return Aggregate(mean=mean, stderr=stderr, ci_low=ci_low, ci_high=ci_high, n=n)


def format_pct(agg: Aggregate) -> str:
    """Format an :class:`Aggregate` of fractions as ``"mean±stderr%"`` in percent with one decimal.

    :param agg: the aggregate (of fractions such as SE values, ``0.34`` meaning 34%).
    :return: e.g. ``"34.0±2.0%"``.
    """
    return f"{100.0 * agg.mean:.1f}±{100.0 * agg.stderr:.1f}%"
