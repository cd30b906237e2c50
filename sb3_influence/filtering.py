"""The filtering rule of Iterative Influence-based Filtering (IIF): which records to drop, given their scores."""

import math
import warnings
from typing import Literal, get_args

import numpy as np

FilterMode = Literal["negative", "all", "random"]
FILTER_MODES: tuple[str, ...] = get_args(FilterMode)


def check_filter_args(filter_fraction: float, filter_mode: str) -> None:
    """
    Raise a ``ValueError`` for a filter fraction outside [0, 1] or an unknown filter mode.

    :param filter_fraction: Fraction ``p`` of records to drop (see :func:`filter_mask`).
    :param filter_mode: One of ``"negative"``, ``"all"``, ``"random"``.
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
    Decide which records to keep for the update (IIF, METHOD.md section 2).

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
