"""The filtering rule of Iterative Influence-based Filtering (IIF): which records to drop, given their scores."""

import math
import warnings
from typing import Literal, get_args

import numpy as np
from scipy.stats import norm

FilterMode = Literal["adaptive", "reliability", "negative", "all", "random"]
FILTER_MODES: tuple[str, ...] = get_args(FilterMode)
#: The modes that rank by cross-fitted scores (:class:`~sb3_influence.scoring.CrossFitScores`).
CROSSFIT_MODES: tuple[str, ...] = ("adaptive", "reliability")


def check_filter_args(filter_fraction: float, filter_mode: str) -> None:
    """
    Raise a ``ValueError`` for a filter fraction outside [0, 1] or an unknown filter mode.

    :param filter_fraction: Fraction ``p`` of records to drop (see :func:`filter_mask`).
    :param filter_mode: One of ``"adaptive"``, ``"reliability"``, ``"negative"``, ``"all"``, ``"random"``.
    """
    if isinstance(filter_fraction, bool) or not isinstance(filter_fraction, (int, float, np.floating, np.integer)):
        raise ValueError(f"filter_fraction must be a number in [0, 1], got {filter_fraction!r}")
    if not 0.0 <= float(filter_fraction) <= 1.0:
        raise ValueError(f"filter_fraction must be in [0, 1], got {filter_fraction}")
    if filter_mode not in FILTER_MODES:
        raise ValueError(f"Unknown filter_mode {filter_mode!r}, expected one of {FILTER_MODES}")


def n_to_drop(filter_fraction: float, n: int) -> int:
    """
    ``floor(p * n)``, robust to floating-point products that land just below an integer (``0.29 * 100``).

    :param filter_fraction: The fraction ``p`` in [0, 1].
    :param n: The number of candidate records.
    :return: The number of records to drop.
    """
    return min(n, math.floor(filter_fraction * n + 1e-9))


def filter_mask(
    scores: np.ndarray,
    filter_fraction: float,
    filter_mode: str = "negative",
    min_keep: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """
    Decide which records to keep for the update (the fixed-p rules of IIF, docs page "How IIF works").

    - ``"negative"`` (the paper's rule): with ``N_neg`` records scored below zero, drop the
      ``floor(p * N_neg)`` lowest-scored records.
    - ``"all"``: drop the ``floor(p * N)`` lowest-scored records, whatever their sign.
    - ``"random"``: drop ``floor(p * N)`` records chosen uniformly at random (the ablation control);
      ``scores`` only give the shape.

    Ties are broken by position (a stable sort), so the rule is deterministic. At most ``N - min_keep``
    records are dropped. If any score is NaN or infinite, a warning is issued and every record is kept.

    :param scores: Influence scores, any shape (e.g. ``(n_steps, n_envs)``).
    :param filter_fraction: The fraction ``p`` in [0, 1].
    :param filter_mode: ``"negative"``, ``"all"`` or ``"random"``.
    :param min_keep: The least number of records to keep (e.g. one minibatch).
    :param rng: Random generator for ``"random"`` mode (a fresh unseeded one if ``None``).
        The global NumPy RNG is never used.
    :return: Boolean array of the same shape as ``scores``, ``True`` for the records to keep.
    """
    check_filter_args(filter_fraction, filter_mode)
    if filter_mode in CROSSFIT_MODES:
        raise ValueError(
            f"filter_mask applies the fixed-p modes; filter_mode={filter_mode!r} is adaptive_filter_mask "
            "or reliability_filter_mask"
        )
    scores = np.asarray(scores)
    flat = scores.reshape(-1)
    keep = np.ones(flat.shape, dtype=bool)
    if filter_mode != "random" and not np.all(np.isfinite(flat)):
        warnings.warn(
            f"{np.count_nonzero(~np.isfinite(flat))} non-finite influence score(s): keeping every record this iteration",
            RuntimeWarning,
        )
        return keep.reshape(scores.shape)
    n_candidates = int(np.count_nonzero(flat < 0)) if filter_mode == "negative" else flat.size
    n_drop = min(n_to_drop(filter_fraction, n_candidates), max(flat.size - max(min_keep, 0), 0))
    if n_drop > 0:
        if filter_mode == "random":
            rng = np.random.default_rng() if rng is None else rng
            drop = rng.choice(flat.size, size=n_drop, replace=False)
        else:
            drop = np.argsort(flat, kind="stable")[:n_drop]
        keep[drop] = False
    return keep.reshape(scores.shape)


def adaptive_filter_mask(
    scores: np.ndarray,
    noise_std: float,
    reliability: float,
    filter_fraction: float = 1.0,
    confidence: float = 0.95,
    min_reliability: float = 0.0,
    min_keep: int = 1,
) -> np.ndarray:
    """
    The adaptive rule: drop only the records whose cross-fitted score is significantly negative.

    With cross-fitted scores ``c_i`` (each record scored by the other folds' objective gradients, see
    :class:`~sb3_influence.scoring.CrossFitScores`) and their pooled standard error ``sigma``, record ``i`` is a
    candidate when ``c_i < -z * sigma``, ``z`` the one-sided normal quantile of ``confidence``. Nothing is
    dropped when the folds do not agree (``reliability`` below ``min_reliability``, or NaN). At most the
    ``floor(p * N_neg)`` lowest-scored candidates are dropped (``N_neg`` records with ``c_i < 0``), and at
    least ``min_keep`` records are kept. Ties are broken by position; no random numbers are used.

    :param scores: Cross-fitted scores, any shape, all finite.
    :param noise_std: Their pooled standard error ``sigma`` (:attr:`CrossFitScores.noise_std`).
    :param reliability: The folds' agreement (:attr:`CrossFitScores.reliability`).
    :param filter_fraction: The cap ``p`` in [0, 1], as a fraction of the negatively scored records.
    :param confidence: One-sided confidence in (0, 1) that a dropped record's score is below zero.
    :param min_reliability: The least reliability at which anything is dropped.
    :param min_keep: The least number of records to keep.
    :return: Boolean array of the same shape as ``scores``, ``True`` for the records to keep.
    """
    check_filter_args(filter_fraction, "adaptive")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scores = _finite_scores(scores, "adaptive_filter_mask")
    flat = scores.reshape(-1)
    if not reliability >= min_reliability or not noise_std >= 0.0:  # NaN compares False
        return np.ones(scores.shape, dtype=bool)
    threshold = -float(norm.ppf(confidence)) * noise_std
    n_candidates = int(np.count_nonzero(flat < min(threshold, 0.0) if noise_std > 0 else flat < 0))
    n_cap = n_to_drop(filter_fraction, int(np.count_nonzero(flat < 0)))
    return _drop_lowest(scores, min(n_candidates, n_cap), min_keep)


def reliability_filter_mask(
    scores: np.ndarray,
    reliability: float,
    filter_fraction: float = 0.5,
    min_reliability: float = 0.0,
    min_keep: int = 1,
    min_fraction: float = 0.0,
) -> np.ndarray:
    """
    The reliability-scaled rule: the paper's rule on cross-fitted scores, with ``p`` scaled by how far the
    ranking can be trusted.

    With cross-fitted scores ``c_i`` (:class:`~sb3_influence.scoring.CrossFitScores`), ``N_neg`` of them below
    zero, and their split reliability ``rho`` (the share of the scores' variance that the folds agree on), the
    ``floor(max(min_fraction, p * clip(rho, 0, 1)) * N_neg)`` lowest-scored records are dropped. With
    ``min_fraction=0`` a ranking that is pure noise (``rho <= 0``) drops nothing; a fully reliable one drops as
    the paper's rule with fraction ``p``. Nothing is dropped when ``rho`` is below ``min_reliability`` or NaN, and
    at least ``min_keep`` records are kept. Ties are broken by position; no random numbers are used.

    :param scores: Cross-fitted scores, any shape, all finite.
    :param reliability: The folds' agreement (:attr:`CrossFitScores.reliability`).
    :param filter_fraction: The fraction ``p`` in [0, 1] of the negatively scored records dropped at
        reliability 1.
    :param min_reliability: The least reliability at which anything is dropped.
    :param min_keep: The least number of records to keep.
    :param min_fraction: The least fraction of the negatively scored records dropped whenever ``rho`` is at least
        ``min_reliability`` (in [0, ``filter_fraction``]; 0: none): ``max(min_fraction, p * clip(rho, 0, 1))``.
    :return: Boolean array of the same shape as ``scores``, ``True`` for the records to keep.
    """
    check_filter_args(filter_fraction, "reliability")
    if not 0.0 <= min_fraction <= filter_fraction:
        raise ValueError(f"min_fraction must be in [0, filter_fraction={filter_fraction}], got {min_fraction!r}")
    scores = _finite_scores(scores, "reliability_filter_mask")
    if not reliability >= min_reliability:  # NaN compares False
        return np.ones(scores.shape, dtype=bool)
    fraction = max(min_fraction, filter_fraction * min(max(float(reliability), 0.0), 1.0))
    n_negative = int(np.count_nonzero(scores < 0))
    return _drop_lowest(scores, n_to_drop(fraction, n_negative), min_keep)


def _finite_scores(scores: np.ndarray, rule: str) -> np.ndarray:
    """``scores`` as float64, or a ``ValueError`` naming ``rule`` if any is not finite."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{rule} needs finite scores (leave non-finite records out first)")
    return scores


def _drop_lowest(scores: np.ndarray, n_drop: int, min_keep: int) -> np.ndarray:
    """Keep mask without the ``n_drop`` lowest scores (ties by position), keeping at least ``min_keep`` records."""
    flat = scores.reshape(-1)
    keep = np.ones(flat.shape, dtype=bool)
    n_drop = min(n_drop, max(flat.size - max(min_keep, 0), 0))
    if n_drop > 0:
        keep[np.argsort(flat, kind="stable")[:n_drop]] = False
    return keep.reshape(scores.shape)


def round_to_minibatches(keep: np.ndarray, scores: np.ndarray, batch_size: int | None) -> np.ndarray:
    """
    Adjust a keep mask so that no epoch ends on a tiny minibatch.

    After filtering, the number kept is rarely a multiple of ``batch_size``, and SB3 takes a full step on the
    remainder every epoch (with a single record it even skips advantage normalisation). Among the records
    with a finite score (the eligible ones, ``M`` of them), the number kept becomes the smallest admissible
    count at or above the rule's (dropping fewer, the highest-scored dropped records come back), else the
    largest below it (the lowest-scored kept records go). Admissible: a multiple of ``batch_size``, or ``M``
    itself when nothing else was left out or its last minibatch holds at least half a batch. A mask that
    keeps every record is returned unchanged (the unfiltered PPO update, whatever its own remainder), and so
    is one with fewer than ``batch_size`` eligible records.

    :param keep: Boolean keep mask (records with a non-finite score must be ``False``).
    :param scores: The scores the rule ranked by, same shape (NaN or infinite for the ineligible records).
    :param batch_size: PPO's minibatch size; ``None`` (one batch per epoch, as A2C) leaves ``keep`` unchanged.
    :return: The adjusted keep mask (a new array).
    """
    keep = np.asarray(keep, dtype=bool)
    flat_keep, flat_scores = keep.reshape(-1).copy(), np.asarray(scores, dtype=np.float64).reshape(-1)
    eligible = np.isfinite(flat_scores)
    if np.any(flat_keep & ~eligible):
        raise ValueError("round_to_minibatches: a kept record has a non-finite score")
    n_eligible, n_kept = int(np.count_nonzero(eligible)), int(np.count_nonzero(flat_keep))
    if batch_size is None or flat_keep.all() or n_eligible < batch_size or n_kept % batch_size == 0:
        return flat_keep.reshape(keep.shape)
    admissible = list(range(batch_size, n_eligible + 1, batch_size))
    if n_eligible == flat_keep.size or n_eligible % batch_size >= batch_size / 2:
        admissible.append(n_eligible)
    above = [count for count in admissible if count >= n_kept]
    target = min(above) if above else max(count for count in admissible if count < n_kept)
    order = np.argsort(np.where(eligible, flat_scores, np.inf), kind="stable")  # ascending; ineligible last
    ranked = order[:n_eligible]
    if target > n_kept:  # bring back the best dropped records
        dropped = ranked[~flat_keep[ranked]]
        flat_keep[dropped[::-1][: target - n_kept]] = True
    elif target < n_kept:  # let the worst kept records go
        kept = ranked[flat_keep[ranked]]
        flat_keep[kept[: n_kept - target]] = False
    return flat_keep.reshape(keep.shape)
