"""
Drawing and formatting helpers of the diagnostics callbacks (:mod:`sb3_influence.callbacks`): one-line texts of
observations and actions, image grids, the score-vs-advantage scatter and the top/bottom records table.
matplotlib is imported on first use only.
"""

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

from sb3_influence.records import RolloutRecords

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure


def copy_records(records: RolloutRecords) -> RolloutRecords:
    """
    A copy of the records that owns its arrays (safe to keep after the buffer is reset or flattened).

    :param records: Records viewing a rollout buffer.
    :return: An independent copy.
    """
    obs = records.observations
    arrays: dict[str, Any] = {
        name: np.array(getattr(records, name), copy=True)
        for name in ("actions", "log_probs", "values", "advantages", "returns", "rewards", "episode_starts")
    }
    arrays["observations"] = (
        {key: np.array(o, copy=True) for key, o in obs.items()} if isinstance(obs, dict) else np.array(obs, copy=True)
    )
    return replace(records, **arrays)


def format_value(value: Any, max_items: int = 6) -> str:
    """
    A short, one-line text of an observation or action for tables.

    Scalars and single-element arrays print as numbers, short vectors in full (2 decimals), long vectors by
    their first ``max_items`` values, images and other multi-dimensional arrays by shape and mean, dicts key by key.

    :param value: An observation or action (array, scalar or dict of arrays).
    :param max_items: How many entries of a long vector to show.
    :return: The text.
    """
    if isinstance(value, dict):
        return "; ".join(f"{key}: {format_value(v, max_items)}" for key, v in value.items())
    arr = np.asarray(value)
    if arr.size == 1:
        item = arr.reshape(-1)[0]
        return str(int(item)) if float(item).is_integer() else f"{float(item):.3g}"
    if arr.ndim >= 2 and arr.size > max_items:
        return f"{'x'.join(map(str, arr.shape))} mean {float(arr.mean()):.3g}"
    flat = arr.reshape(-1)
    text = np.array2string(flat[:max_items], precision=2, separator=", ", suppress_small=True, max_line_width=10_000)
    return text[:-1] + ", ...]" if flat.size > max_items else text


def _image_key(space: spaces.Space) -> tuple[bool, str | None]:
    """Whether the observations contain an image, and its key for a Dict space."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            if is_image_space(sub, check_channels=False):
                return True, key
        return False, None
    return is_image_space(space, check_channels=False), None


def image_grid(images: np.ndarray, channels_first: bool, min_size: int = 64, gap: int = 2) -> np.ndarray:
    """
    Tile a batch of images side by side into one ``HWC`` uint8 image (for TensorBoard).

    Small images are enlarged by an integer factor (nearest neighbour) to at least ``min_size`` pixels; the
    grid is contrast-stretched to [0, 255] over all tiles (encoded grids such as MiniGrid's 7x7x3 hold small
    integers). One or two channels, or more than four, are shown in grey (the first channel).

    :param images: ``(k, C, H, W)`` or ``(k, H, W, C)``.
    :param channels_first: Whether the channel axis comes first.
    :param min_size: The least height/width of a tile in pixels.
    :param gap: White pixels between tiles.
    :return: ``(H', W', 3)`` uint8.
    """
    imgs = np.asarray(images, dtype=np.float64)
    if channels_first:
        imgs = imgs.transpose(0, 2, 3, 1)
    if imgs.shape[-1] not in (3, 4):
        imgs = np.repeat(imgs[..., :1], 3, axis=-1)
    imgs = imgs[..., :3]
    low, high = float(imgs.min()), float(imgs.max())
    imgs = (imgs - low) / (high - low) * 255.0 if high > low else np.zeros_like(imgs)
    factor = max(1, int(np.ceil(min_size / max(imgs.shape[1], imgs.shape[2]))))
    imgs = imgs.repeat(factor, axis=1).repeat(factor, axis=2)
    k, h, w, _ = imgs.shape
    grid = np.full((h, k * w + (k - 1) * gap, 3), 255.0)
    for i in range(k):
        grid[:, i * (w + gap) : i * (w + gap) + w] = imgs[i]
    return grid.astype(np.uint8)


def score_advantage_figure(
    scores: np.ndarray, advantages: np.ndarray, kept: np.ndarray, num_timesteps: int, max_points: int = 4000
) -> "MplFigure":
    """
    The scatter of the influence scores against the GAE advantages: kept records in blue, dropped ones in red.

    :param scores: The flat scores (non-finite ones are left out).
    :param advantages: The flat advantages ``A_hat``.
    :param kept: The flat keep mask.
    :param num_timesteps: When the rollout was collected (for the title).
    :param max_points: The most kept records drawn (evenly spaced); dropped ones are all drawn.
    :return: A matplotlib figure (not attached to pyplot).
    """
    from matplotlib.figure import Figure as MplFigure  # imported on first use: keeps `import sb3_influence` light

    figure = MplFigure(figsize=(6.0, 4.5), dpi=100)
    ax = figure.add_subplot(1, 1, 1)
    finite = np.isfinite(scores)
    kept_idx = np.flatnonzero(finite & kept)
    if kept_idx.size > max_points:
        kept_idx = kept_idx[np.linspace(0, kept_idx.size - 1, max_points).astype(int)]
    dropped_idx = np.flatnonzero(finite & ~kept)
    ax.scatter(advantages[kept_idx], scores[kept_idx], s=6, alpha=0.5, c="tab:blue", label=f"kept ({int(kept.sum())})")
    if dropped_idx.size:
        label = f"dropped ({dropped_idx.size})"
        ax.scatter(advantages[dropped_idx], scores[dropped_idx], s=8, alpha=0.8, c="tab:red", label=label)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.axvline(0.0, color="grey", linewidth=0.6)
    ax.set_xlabel("GAE advantage Â")
    ax.set_ylabel("influence score I")
    ax.set_title(f"score vs advantage, {num_timesteps} steps", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure


def records_table(
    records: RolloutRecords,
    scores: np.ndarray,
    kept: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    num_timesteps: int,
) -> str:
    """
    A Markdown table of the top-k and bottom-k records (step, env, action, ``A_hat``, return, score, kept,
    observation summary), for TensorBoard's text tab.

    :param records: The rollout's records.
    :param scores: The flat scores.
    :param kept: The flat keep mask.
    :param top: Flat indices of the most helpful records, best first.
    :param bottom: Flat indices of the most harmful records, worst first.
    :param num_timesteps: When the rollout was collected.
    :return: The Markdown text.
    """
    n_envs = records.n_envs
    obs = records.observations

    def rows(indices: np.ndarray) -> list[str]:
        out = []
        for rank, i in enumerate(indices, start=1):
            o = {key: v[i] for key, v in obs.items()} if isinstance(obs, dict) else obs[i]
            out.append(
                f"| {rank} | {i // n_envs} | {i % n_envs} | {format_value(records.actions[i])} "
                f"| {records.advantages[i]:.4g} | {records.returns[i]:.4g} | {scores[i]:.4g} "
                f"| {'yes' if kept[i] else 'no'} | {format_value(o)} |"
            )
        return out

    header = ["| rank | step | env | action | Â | return | score | kept | observation |", "|---" * 9 + "|"]
    return "\n".join(
        [
            f"Rollout collected at {num_timesteps} steps, {scores.size} records.",
            "",
            f"**Top {len(top)} (most helpful)**",
            "",
            *header,
            *rows(top),
            "",
            f"**Bottom {len(bottom)} (most harmful)**",
            "",
            *header,
            *rows(bottom),
        ]
    )
