"""
The maths of the influence diagnostics (docs page "Diagnostics gallery"), as small pure functions on numpy arrays.

- :func:`monte_carlo_advantages`: the Monte-Carlo advantage ``A_bar`` from empirical discounted returns
  in the buffer, for the paper's ``A_bar * A_hat`` advantage-accuracy analysis;
- :func:`spearman`: a NaN-safe Spearman rank correlation;
- :func:`roughness`: the roughness of the scores over a k-nearest-neighbour graph of positively scored records;
- :func:`policy_embeddings`: state embeddings for that graph (the policy's latent or features);
- :func:`score_statistics`: the scalar summaries the diagnostics callback logs.

Everything works on the step-major flat layout of :class:`~sb3_influence.RolloutRecords`
(index ``step * n_envs + env``), so per-record arrays reshape to ``(n_steps, n_envs)``.
"""

from typing import Literal

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_influence.records import NumpyObs, RolloutRecords, observations_to_tensor, select_obs

Truncation = Literal["bootstrap", "drop"]
AdvantageMethod = Literal["auto", "exact", "baseline"]
EmbeddingKind = Literal["latent", "features", "observation"]


def discounted_returns_to_go(records: RolloutRecords, gamma: float, truncation: Truncation = "bootstrap") -> np.ndarray:
    """
    Empirical discounted return-to-go ``G_t = r_t + gamma r_{t+1} + ...`` of every record, summed within
    its episode and within the buffer (never across an episode start).

    The last episode of each environment is cut by the end of the buffer. ``truncation`` says what its records get:

    - ``"bootstrap"`` (default): the sum is completed with the critic, ``G_{T-1} = R_{T-1}``, the value target
      of the buffer's last step (``r + gamma V_k(s_T)`` when the episode goes on, ``r`` when it ended there;
      exactly what GAE bootstraps with), then discounted back through the suffix;
    - ``"drop"``: only complete suffixes count; records of an episode not seen ending in the buffer get NaN.
      (An episode that ends exactly at the buffer's last step cannot be told apart, so it counts as cut.)

    Time-limit truncations inside the buffer are already bootstrapped by SB3 (it adds ``gamma V(terminal_obs)``
    to the reward), so they need no treatment here.

    :param records: The rollout records.
    :param gamma: The discount factor.
    :param truncation: ``"bootstrap"`` or ``"drop"``.
    :return: ``G``, flat step-major, shape ``(n,)`` (float64, NaN for dropped records).
    """
    if truncation not in ("bootstrap", "drop"):
        raise ValueError(f"Unknown truncation {truncation!r}, expected 'bootstrap' or 'drop'")
    n_steps, n_envs = records.n_steps, records.n_envs
    rewards = np.asarray(records.rewards, dtype=np.float64).reshape(n_steps, n_envs)
    starts = np.asarray(records.episode_starts, dtype=np.float64).reshape(n_steps, n_envs) > 0.5
    returns = np.asarray(records.returns, dtype=np.float64).reshape(n_steps, n_envs)
    out = np.empty((n_steps, n_envs), dtype=np.float64)
    for env in range(n_envs):
        tail = returns[-1, env] if truncation == "bootstrap" else np.nan
        for step in range(n_steps - 1, -1, -1):
            if step == n_steps - 1:
                out[step, env] = tail
            elif starts[step + 1, env]:  # the episode ended at this step: complete return
                out[step, env] = rewards[step, env]
            else:
                out[step, env] = rewards[step, env] + gamma * out[step + 1, env]
    return out.reshape(-1)


def _row_keys(arrays: list[np.ndarray], n: int) -> np.ndarray:
    """One integer id per row of the concatenated arrays (equal rows, equal ids)."""
    parts = [np.ascontiguousarray(np.asarray(a).reshape(n, -1)) for a in arrays]
    rows = np.concatenate([p.view(np.uint8).reshape(n, -1) for p in parts], axis=1)
    _, ids = np.unique(rows, axis=0, return_inverse=True)
    return ids.reshape(-1)


def _group_mean(values: np.ndarray, ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over the valid records sharing each record's id (NaN if the group has none)."""
    n_groups = int(ids.max()) + 1 if ids.size else 0
    sums = np.bincount(ids[valid], weights=values[valid], minlength=n_groups)
    counts = np.bincount(ids[valid], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means[ids]


def has_discrete_observations(observations: NumpyObs) -> bool:
    """
    Whether observations can be grouped exactly: integer or boolean dtype (``Discrete``, ``MultiDiscrete``,
    ``MultiBinary`` and ``uint8`` image spaces such as MiniGrid's), for every key of a dict.

    :param observations: Observations as the buffer stores them.
    :return: ``True`` for discrete observations.
    """
    arrays = observations.values() if isinstance(observations, dict) else [observations]
    return all(np.issubdtype(np.asarray(a).dtype, np.integer) or np.asarray(a).dtype == np.bool_ for a in arrays)


def monte_carlo_advantages(
    records: RolloutRecords,
    gamma: float,
    *,
    method: AdvantageMethod = "auto",
    truncation: Truncation = "bootstrap",
) -> np.ndarray:
    """
    The Monte-Carlo advantage ``A_bar`` of every record from empirical discounted returns in the buffer
    (docs page "Diagnostics gallery", section "The Monte-Carlo advantage"), for the paper's analysis of the scores
    against ``A_bar * A_hat``.

    With ``G`` the return-to-go of :func:`discounted_returns_to_go`:

    - ``"exact"``: records are grouped by identical state (the bytes of the observation) and by identical
      (state, action); ``A_bar(s, a) = mean G over (s, a) - mean G over s``. This is the paper's quantity,
      exact (up to sampling) when the observations are discrete and states repeat (FrozenLake, MiniGrid).
      A state visited once gives ``A_bar = 0``.
    - ``"baseline"``: an estimate for continuous observations, where states never repeat:
      ``A_bar_i = G_i - V_k(s_i)``, the empirical return minus the critic's value at collection time
      (the critic stands in for the mean return of ``s``). It is a Monte-Carlo advantage with a learned
      baseline, not the paper's exact quantity.
    - ``"auto"`` (default): ``"exact"`` if :func:`has_discrete_observations`, else ``"baseline"``.

    :param records: The rollout records.
    :param gamma: The discount factor (the model's ``gamma``).
    :param method: ``"auto"``, ``"exact"`` or ``"baseline"``.
    :param truncation: How the episodes cut by the buffer end are handled (see :func:`discounted_returns_to_go`);
        with ``"drop"`` their records get NaN and are left out of the group means.
    :return: ``A_bar``, flat step-major, shape ``(n,)`` (float64; NaN where undefined).
    """
    if method not in ("auto", "exact", "baseline"):
        raise ValueError(f"Unknown method {method!r}, expected 'auto', 'exact' or 'baseline'")
    g = discounted_returns_to_go(records, gamma, truncation)
    if method == "auto":
        method = "exact" if has_discrete_observations(records.observations) else "baseline"
    if method == "baseline":
        return g - np.asarray(records.values, dtype=np.float64)
    n = records.n
    obs = records.observations
    obs_arrays = [obs[key] for key in sorted(obs)] if isinstance(obs, dict) else [obs]
    state_ids = _row_keys(obs_arrays, n)
    pair_ids = _row_keys([*obs_arrays, np.asarray(records.actions)], n)
    valid = np.isfinite(g)
    advantages = _group_mean(g, pair_ids, valid) - _group_mean(g, state_ids, valid)
    advantages[~valid] = np.nan
    return advantages


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """
    NaN-safe Spearman rank correlation of two equally long arrays.

    Pairs where either value is NaN or infinite are left out. The result is NaN when fewer than two pairs
    remain or when either side is constant (the correlation is undefined then); otherwise it lies in [-1, 1].
    Never warns, never raises for such inputs.

    :param x: First array (any shape, flattened).
    :param y: Second array (same size).
    :return: The rank correlation, or NaN.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"spearman needs arrays of the same size, got {x.size} and {y.size}")
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    from scipy.stats import rankdata  # imported on first use: keeps `import sb3_influence` light

    # Pearson correlation of the (average-tie) ranks: spearmanr's definition, without its warnings.
    rx, ry = rankdata(x) - (x.size + 1) / 2.0, rankdata(y) - (y.size + 1) / 2.0
    denom = np.sqrt(np.dot(rx, rx) * np.dot(ry, ry))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.dot(rx, ry) / denom, -1.0, 1.0))


def knn_graph(embeddings: np.ndarray, k: int, chunk_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """
    The k nearest neighbours (Euclidean, excluding the point itself) of every point.

    Ties are broken by index, so the graph is deterministic. Memory is ``O(chunk_size * m)``.

    :param embeddings: Points, ``(m, d)``.
    :param k: Neighbours per point (at most ``m - 1``).
    :param chunk_size: Rows of the distance matrix computed at once.
    :return: ``(neighbours, distances)``, both ``(m, k)``, nearest first.
    """
    e = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    m = e.shape[0]
    k = min(k, m - 1)
    sq = np.einsum("ij,ij->i", e, e)
    neighbours = np.empty((m, k), dtype=np.int64)
    distances = np.empty((m, k), dtype=np.float64)
    for start in range(0, m, chunk_size):
        rows = slice(start, min(start + chunk_size, m))
        d2 = np.maximum(sq[rows, None] + sq[None, :] - 2.0 * e[rows] @ e.T, 0.0)
        d2[np.arange(d2.shape[0]), np.arange(start, rows.stop)] = np.inf  # not its own neighbour
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        neighbours[rows] = order
        distances[rows] = np.sqrt(np.take_along_axis(d2, order, axis=1))
    return neighbours, distances


def roughness(scores: np.ndarray, embeddings: np.ndarray, k: int = 10) -> float:
    """
    Roughness of the influence scores over a k-nearest-neighbour graph of the positively scored records
    (docs page "Diagnostics gallery", section "Roughness"): ``sum_ij w_ij (I~_i - I~_j)^2 / sum_ij w_ij``.
    High when neighbouring states get unrelated scores (phase 1, action-advantage association), lower when
    similar states score alike (phase 2).

    Exact choices:

    - nodes: the records with a finite score ``> 0``;
    - edges: ``j`` is among the ``k`` nearest neighbours of ``i`` (Euclidean distance between embeddings, ties
      by index) *or* ``i`` among those of ``j``: the graph is symmetrised and each unordered pair counted once;
    - ``w_ij = exp(-||e_i - e_j||^2 / sigma^2)`` with ``sigma`` the median of the ``m * k`` kNN distances
      (each point to each of its ``k`` neighbours). If that median is 0 (mostly duplicate states), ``sigma``
      is the median of the positive kNN distances; if every kNN distance is 0, every weight is 1;
    - ``I~ = I / max |I|`` with the maximum over the nodes, so ``I~`` lies in (0, 1] and the roughness in [0, 1).

    :param scores: Influence scores, any shape (flattened), one per embedding row.
    :param embeddings: State embeddings, ``(n, ...)`` (flattened per record).
    :param k: Neighbours per node (capped at the number of nodes minus one).
    :return: The roughness, or NaN when fewer than two records score positive.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    embeddings = np.asarray(embeddings, dtype=np.float64)
    embeddings = embeddings.reshape(embeddings.shape[0], -1)
    if embeddings.shape[0] != scores.size:
        raise ValueError(f"roughness needs one embedding per score, got {embeddings.shape[0]} and {scores.size}")
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    nodes = np.flatnonzero(np.isfinite(scores) & (scores > 0))
    if nodes.size < 2:
        return float("nan")
    values = scores[nodes] / np.max(scores[nodes])
    neighbours, distances = knn_graph(embeddings[nodes], k)
    m, k_eff = neighbours.shape
    sigma = float(np.median(distances))
    if sigma == 0.0:
        positive = distances[distances > 0]
        sigma = float(np.median(positive)) if positive.size else 0.0
    # symmetrise: unordered pairs (min, max), each once
    i = np.repeat(np.arange(m), k_eff)
    j = neighbours.reshape(-1)
    d = distances.reshape(-1)
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    d = d[first]
    weights = np.ones_like(d) if sigma == 0.0 else np.exp(-(d**2) / sigma**2)
    total = weights.sum()
    if not total > 0.0:
        return float("nan")
    diffs = values[pairs[:, 0]] - values[pairs[:, 1]]
    return float(np.sum(weights * diffs**2) / total)


def policy_embeddings(
    policy: ActorCriticPolicy,
    observations: NumpyObs,
    kind: EmbeddingKind = "latent",
    chunk_size: int = 2048,
) -> np.ndarray:
    """
    State embeddings ``e`` for the roughness graph and the probe similarity.

    - ``"latent"`` (default): the actor's latent, ``policy.mlp_extractor.forward_actor(
      policy.extract_features(obs, policy.pi_features_extractor))``: the representation the action head reads;
    - ``"features"``: the actor's features extractor output only (before the MLP);
    - ``"observation"``: the preprocessed observation (one-hot for discrete spaces, images scaled to [0, 1],
      dict keys concatenated), i.e. no learned representation.

    Computed in eval mode without gradients; the training mode is restored afterwards.

    :param policy: The actor-critic policy.
    :param observations: A batch of observations as the buffer stores them (array or dict of arrays).
    :param kind: ``"latent"``, ``"features"`` or ``"observation"``.
    :param chunk_size: The most observations per forward pass.
    :return: Embeddings ``(n, d)`` (float64).
    """
    if kind not in ("latent", "features", "observation"):
        raise ValueError(f"Unknown embedding kind {kind!r}, expected 'latent', 'features' or 'observation'")
    first = next(iter(observations.values())) if isinstance(observations, dict) else observations
    n = len(first)
    was_training = policy.training
    policy.set_training_mode(False)
    out = []
    try:
        with th.no_grad():
            for start in range(0, n, chunk_size):
                obs = observations_to_tensor(select_obs(observations, slice(start, min(start + chunk_size, n))), policy.device)
                if kind == "observation":
                    from stable_baselines3.common.preprocessing import preprocess_obs

                    pre = preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
                    parts = [pre[key] for key in sorted(pre)] if isinstance(pre, dict) else [pre]
                    emb = th.cat([p.reshape(p.shape[0], -1).float() for p in parts], dim=1)
                else:
                    emb = policy.extract_features(obs, policy.pi_features_extractor)  # type: ignore[assignment]
                    if kind == "latent":
                        emb = policy.mlp_extractor.forward_actor(emb)
                out.append(emb.reshape(emb.shape[0], -1).double().cpu().numpy())
    finally:
        policy.set_training_mode(was_training)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0))


def score_statistics(
    scores: np.ndarray,
    advantages: np.ndarray,
    kept: np.ndarray | None = None,
    mc_advantages: np.ndarray | None = None,
) -> dict[str, float]:
    """
    The scalar summaries of one iteration's scores that :class:`~sb3_influence.InfluenceDiagnosticsCallback` logs.

    Keys: ``score_mean``, ``score_std``, ``negative_fraction`` (over the finite scores), ``nonfinite`` (count),
    ``dropped``, ``kept_fraction``; if every score is finite also ``spearman_advantage`` (with ``A_hat``),
    ``spearman_abs_advantage`` (with ``|A_hat|``) and, given ``mc_advantages``, ``spearman_mc_product``
    (with ``A_bar * A_hat``; the paper reports about -0.67 on FrozenLake) and ``mc_sign_agreement`` (among
    the records with a finite, non-zero ``A_bar``, the fraction where ``A_hat`` has the same sign; NaN if
    there are none). A correlation is NaN where undefined (constant input).

    :param scores: Influence scores, any shape.
    :param advantages: Raw GAE advantages ``A_hat``, same size.
    :param kept: Boolean keep mask, same size (``None``: every record kept).
    :param mc_advantages: Monte-Carlo advantages ``A_bar`` (see :func:`monte_carlo_advantages`), same size.
    :return: Name to value.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    adv = np.asarray(advantages, dtype=np.float64).reshape(-1)
    keep = np.ones(s.shape, dtype=bool) if kept is None else np.asarray(kept, dtype=bool).reshape(-1)
    finite = np.isfinite(s)
    fs = s[finite]
    stats: dict[str, float] = {
        "score_mean": float(fs.mean()) if fs.size else float("nan"),
        "score_std": float(fs.std()) if fs.size else float("nan"),
        "negative_fraction": float(np.mean(fs < 0)) if fs.size else float("nan"),
        "nonfinite": float(s.size - fs.size),
        "dropped": float(s.size - np.count_nonzero(keep)),
        "kept_fraction": float(np.count_nonzero(keep) / max(s.size, 1)),
    }
    if fs.size == s.size:
        stats["spearman_advantage"] = spearman(s, adv)
        stats["spearman_abs_advantage"] = spearman(s, np.abs(adv))
        if mc_advantages is not None:
            mc = np.asarray(mc_advantages, dtype=np.float64).reshape(-1)
            stats["spearman_mc_product"] = spearman(s, mc * adv)
            defined = np.isfinite(mc) & (mc != 0)
            stats["mc_sign_agreement"] = (
                float(np.mean(np.sign(mc[defined]) == np.sign(adv[defined]))) if defined.any() else float("nan")
            )
    return stats
