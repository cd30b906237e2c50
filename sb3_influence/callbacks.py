"""
SB3 callbacks that show what influence scoring and IIF do, in TensorBoard (docs page "Diagnostics gallery").

- :class:`InfluenceDiagnosticsCallback`: every iteration, summaries of the influence scores (scalars,
  histograms, a score-vs-advantage scatter, a table of the top and bottom records, an image grid of the
  bottom states) and the paper's advantage-accuracy analysis, for any IIF algorithm (InfluencePPO, InfluenceA2C,
  InfluenceMaskablePPO, InfluenceRecurrentPPO: :class:`~sb3_influence.iif.SupportsInfluence`) or for its plain
  parent (scores computed by the callback, nothing dropped).
- :class:`BehaviorTimelineCallback`: for given (observation, action) probes, how the records that make the
  agent take the probe action evolve (association, clustering, saturation).

Both use SB3's logger, so everything lands in the run's TensorBoard event file under ``influence/`` and
``behavior/``. Non-scalar values are excluded from the stdout, log, json and csv writers. The figures, tables and
image grids are drawn by :mod:`sb3_influence.figures`.
"""

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, Image
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space_channels_first

from sb3_influence.diagnostics import (
    AdvantageMethod,
    EmbeddingKind,
    Truncation,
    monte_carlo_advantages,
    policy_embeddings,
    roughness,
    score_statistics,
)
from sb3_influence.figures import _image_key, copy_records, image_grid, records_table, score_advantage_figure
from sb3_influence.iif import SupportsInfluence
from sb3_influence.objectives import ActionObjective, InfluenceObjective
from sb3_influence.records import NumpyObs, RolloutRecords
from sb3_influence.scoring import model_influence_scores

#: The writers that cannot show histograms, figures, images or tables.
NON_SCALAR_EXCLUDE = ("stdout", "log", "json", "csv")
#: The behaviour timeline's many per-probe scalars are kept off the console table (whose 36-character key
#: truncation would make long probe names collide); they go to TensorBoard, json and csv.
TIMELINE_EXCLUDE = ("stdout", "log")


def _policy(model: Any) -> ActorCriticPolicy:
    """The model's feed-forward actor-critic policy (SB3's or sb3-contrib's maskable one), for state embeddings."""
    policy = model.policy
    if not isinstance(policy, (ActorCriticPolicy, MaskableActorCriticPolicy)) or hasattr(policy, "lstm_actor"):
        raise ValueError(
            f"behaviour probes need a feed-forward actor-critic policy (not recurrent), got {type(policy).__name__}"
        )
    return policy  # type: ignore[return-value]


@dataclass
class _Pending:
    """One iteration waiting to be logged (its update has not run yet)."""

    records: RolloutRecords
    num_timesteps: int
    scores: np.ndarray | None = None  # plain PPO: computed by the callback
    seconds: float = 0.0
    scored_at: float = 0.0


class InfluenceDiagnosticsCallback(BaseCallback):
    """
    Logs what influence scoring (and IIF's filtering) sees every iteration, under ``influence/`` in SB3's logger.

    Scalars (also kept in :attr:`history`): ``score_mean``, ``score_std``, ``negative_fraction``, ``nonfinite``,
    ``dropped``, ``kept_fraction``, ``scoring_time`` (s), ``update_time`` (s), ``scoring_time_ratio``
    (scoring / update), ``spearman_advantage`` and ``spearman_abs_advantage`` (Spearman correlation of the scores
    with ``A_hat`` and ``|A_hat|``), and with ``advantage_accuracy`` the paper's analysis: ``spearman_mc_product``
    (with ``A_bar * A_hat``, ``A_bar`` the Monte-Carlo advantage of
    :func:`~sb3_influence.diagnostics.monte_carlo_advantages`) and ``mc_sign_agreement``. A value that is
    undefined in an iteration (a correlation of constant input) is not recorded; correlations are skipped when
    any score is non-finite.

    Non-scalars (TensorBoard only): histograms ``influence/scores`` and ``influence/dropped_scores`` (when
    records were dropped); the figure ``influence/score_vs_advantage`` (kept in blue, dropped in red); the text
    ``influence/records``, a table of the top-k and bottom-k records (step, env, action, ``A_hat``, return,
    score, observation summary); for image observations the image ``influence/bottom_states``, the bottom-k
    states left to right (contrast-stretched).

    Timing. With an IIF algorithm (:class:`~sb3_influence.InfluencePPO` etc.) the scores are the model's own
    (``last_influence``, computed inside ``train()``); they are ready at the next ``_on_rollout_start``, so
    iteration k is recorded there (or at the end of training) and written at the following logger dump, the step
    where SB3 writes iteration k's ``train/`` values. ``scoring_time``/``update_time`` are
    ``last_influence.seconds``/``update_seconds``. With a plain :class:`~stable_baselines3.PPO` the callback scores
    the full buffer at ``_on_rollout_end`` (the parameters are still ``theta_k``) with ``objective``, drops nothing,
    and records at the same points; its ``update_time`` is approximate: the wall-clock time from the end of its
    scoring to the next ``_on_rollout_start`` (logger dump plus ``train()``). With ``dump_on_training_end`` the
    logger is dumped once more when training ends, so the last iteration (and SB3's last ``train/`` values) is
    written too.

    The callback never stops training: a failing diagnostic is reported as a warning and skipped (unless ``strict``).

    :param log_every: Diagnose every ``log_every``-th iteration (1: all). Skipped iterations cost nothing
        (with plain PPO they are not scored).
    :param histograms: Log the score histograms.
    :param scatter: Log the score-vs-advantage scatter figure.
    :param table: Log the top/bottom records table.
    :param images: Log the bottom states' image grid (image observations only).
    :param advantage_accuracy: Compute the Monte-Carlo advantage and its correlations.
    :param top_k: How many records in the table and the image grid.
    :param mc_method: ``method`` of :func:`~sb3_influence.diagnostics.monte_carlo_advantages`.
    :param mc_truncation: ``truncation`` of :func:`~sb3_influence.diagnostics.monte_carlo_advantages`.
    :param max_scatter_points: The most kept records drawn in the scatter (evenly spaced; dropped ones are all drawn).
    :param objective: The objective scored for a plain parent algorithm (default: the return objective); ignored
        for IIF algorithms, whose own scores are shown.
    :param chunk_size: The most records per forward pass when scoring a plain PPO.
    :param dump_on_training_end: Dump the logger at the end of training to write the last iteration.
    :param strict: Raise instead of warning when a diagnostic fails (for tests).
    :param verbose: Verbosity level.
    """

    def __init__(
        self,
        log_every: int = 1,
        histograms: bool = True,
        scatter: bool = True,
        table: bool = True,
        images: bool = True,
        advantage_accuracy: bool = True,
        top_k: int = 5,
        mc_method: AdvantageMethod = "auto",
        mc_truncation: Truncation = "bootstrap",
        max_scatter_points: int = 4000,
        objective: InfluenceObjective | None = None,
        chunk_size: int = 2048,
        dump_on_training_end: bool = True,
        strict: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if log_every < 1 or top_k < 1:
            raise ValueError(f"log_every and top_k must be positive, got {log_every} and {top_k}")
        self.log_every = log_every
        self.histograms = histograms
        self.scatter = scatter
        self.table = table
        self.images = images
        self.advantage_accuracy = advantage_accuracy
        self.top_k = top_k
        self.mc_method = mc_method
        self.mc_truncation = mc_truncation
        self.max_scatter_points = max_scatter_points
        self.objective = objective
        self.chunk_size = chunk_size
        self.dump_on_training_end = dump_on_training_end
        self.strict = strict
        #: One dict of the recorded scalars per diagnosed iteration (plus ``num_timesteps``, the rollout's).
        self.history: list[dict[str, float]] = []
        self._iteration = 0
        self._pending: _Pending | None = None
        self._recorded_since_dump = False

    def _init_callback(self) -> None:
        self._iteration = 0
        self._pending = None

    def _on_step(self) -> bool:
        return True

    def _fail(self, exc: Exception) -> None:
        if self.strict:
            raise exc
        warnings.warn(f"{type(self).__name__} skipped an iteration: {exc!r}", RuntimeWarning)

    def _on_rollout_end(self) -> None:
        self._iteration += 1
        self._pending = None
        if self._iteration % self.log_every != 0:
            return
        try:
            records = copy_records(RolloutRecords.from_buffer(self.model.rollout_buffer))  # type: ignore[attr-defined]
            pending = _Pending(records=records, num_timesteps=self.num_timesteps)
            if not isinstance(self.model, SupportsInfluence):
                start = time.perf_counter()
                pending.scores = model_influence_scores(self.model, records, self.objective, self.chunk_size)
                pending.scored_at = time.perf_counter()
                pending.seconds = pending.scored_at - start
            self._pending = pending
        except Exception as exc:
            self._fail(exc)

    def _on_rollout_start(self) -> None:
        self._flush()

    def _on_training_end(self) -> None:
        self._flush()
        if self.dump_on_training_end and self._recorded_since_dump:
            self.logger.dump(self.num_timesteps)
        self._recorded_since_dump = False

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            if isinstance(self.model, SupportsInfluence):
                report = self.model.last_influence
                if report is None or report.num_timesteps != pending.num_timesteps:
                    raise RuntimeError(f"no influence report for the rollout at {pending.num_timesteps} steps")
                scores, kept = np.asarray(report.scores), np.asarray(report.kept)
                seconds, update_seconds = report.seconds, report.update_seconds
            else:
                assert pending.scores is not None
                scores, kept = pending.scores, np.ones(pending.scores.shape, dtype=bool)
                seconds, update_seconds = pending.seconds, time.perf_counter() - pending.scored_at
            self._log(pending.records, scores, kept, seconds, update_seconds, pending.num_timesteps)
        except Exception as exc:
            self._fail(exc)

    def _log(
        self,
        records: RolloutRecords,
        scores: np.ndarray,
        kept: np.ndarray,
        seconds: float,
        update_seconds: float | None,
        num_timesteps: int,
    ) -> None:
        flat_scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        flat_kept = np.asarray(kept, dtype=bool).reshape(-1)
        advantages = np.asarray(records.advantages, dtype=np.float64).reshape(-1)
        mc = None
        if self.advantage_accuracy:
            mc = monte_carlo_advantages(
                records,
                float(self.model.gamma),  # type: ignore[attr-defined]
                method=self.mc_method,
                truncation=self.mc_truncation,
            )
        stats = score_statistics(flat_scores, advantages, flat_kept, mc)
        stats["scoring_time"] = float(seconds)
        if update_seconds is not None:
            stats["update_time"] = float(update_seconds)
            if update_seconds > 0:
                stats["scoring_time_ratio"] = float(seconds) / float(update_seconds)
        for key, value in stats.items():
            if np.isfinite(value):
                self.logger.record(f"influence/{key}", value)
        self.history.append({"num_timesteps": float(num_timesteps), **stats})
        self._recorded_since_dump = True

        finite = np.isfinite(flat_scores)
        if self.histograms and finite.any():
            self.logger.record("influence/scores", flat_scores[finite], exclude=NON_SCALAR_EXCLUDE)
            dropped = flat_scores[finite & ~flat_kept]
            if dropped.size:
                self.logger.record("influence/dropped_scores", dropped, exclude=NON_SCALAR_EXCLUDE)
        if self.scatter and finite.any():
            figure = score_advantage_figure(flat_scores, advantages, flat_kept, num_timesteps, self.max_scatter_points)
            self.logger.record("influence/score_vs_advantage", Figure(figure, close=True), exclude=NON_SCALAR_EXCLUDE)
        if (self.table or self.images) and finite.any():
            order = np.flatnonzero(finite)[np.argsort(-flat_scores[finite], kind="stable")]
            k = min(self.top_k, order.size)
            top, bottom = order[:k], order[::-1][:k]
            if self.table:
                text = records_table(records, flat_scores, flat_kept, top, bottom, num_timesteps)
                self.logger.record("influence/records", text, exclude=NON_SCALAR_EXCLUDE)
            has_image, image_key = _image_key(self.model.observation_space)
            if self.images and has_image:
                obs_space: Any = self.model.observation_space
                obs: Any = records.observations
                space = obs_space[image_key] if image_key is not None else obs_space
                images = np.asarray(obs[image_key] if image_key is not None else obs)[bottom]
                grid = image_grid(images, is_image_space_channels_first(space))
                self.logger.record("influence/bottom_states", Image(grid, "HWC"), exclude=NON_SCALAR_EXCLUDE)


Probe = tuple[Any, Any]


class BehaviorTimelineCallback(BaseCallback):
    """
    Watches behaviour formation (docs page "Diagnostics gallery", "The behaviour-formation phases"): for user-given
    (observation, action) probes, every iteration scores the rollout buffer under
    :class:`~sb3_influence.ActionObjective` ("which records make the agent take ``a*`` in ``s*``") at
    ``_on_rollout_end`` (parameters ``theta_k``) and logs, per probe ``behavior/<name>/...``:

    - ``log_prob``: the objective, ``mean log pi(a*|s*)`` (rises as the behaviour forms);
    - ``top_action_match``: fraction of the top-k records whose action is a probe action (high in phase 1,
      action-advantage association regardless of state);
    - ``top_similarity`` / ``mean_similarity``: cosine similarity between the embedding of the top-k records' states
      (resp. all records) and the nearest probe state's; ``top_distance_ratio``: their mean Euclidean distance
      to it divided by that of all records (below 1 when the top records are near the probe: phase 2, semantic
      clustering);
    - ``roughness``: :func:`~sb3_influence.diagnostics.roughness` of the scores over the kNN graph of the positively
      scored records (high in phase 1, drops in phase 2);
    - ``positive_fraction``, ``score_scale`` (``max |I|``) and ``score_abs_mean`` (near 0 and noisy in phase 3,
      saturation).

    Embeddings are :func:`~sb3_influence.diagnostics.policy_embeddings` of kind ``embedding`` (the actor's latent by
    default). Works for :class:`~stable_baselines3.PPO` and :class:`~sb3_influence.InfluencePPO` alike and changes
    nothing in training. The values are written at the iteration's own logger dump (TensorBoard, json and csv writers;
    not the console table); :attr:`history` keeps them too.

    :param probes: The (observation, action) pairs: a sequence (named ``probe_0``, ``probe_1``, ...) or a mapping
        name -> pair. An observation is as the environment returns it; a pair may hold a batch of observations
        with one action each (then "the probe state" is the nearest of them).
    :param top_k: How many top records the similarity and action match are measured on.
    :param k_neighbors: ``k`` of the roughness graph.
    :param embedding: ``"latent"``, ``"features"`` or ``"observation"``.
    :param log_every: Score every ``log_every``-th iteration.
    :param prefix: The logger namespace.
    :param chunk_size: The most records per forward pass.
    :param strict: Raise instead of warning when a diagnostic fails (for tests).
    :param verbose: Verbosity level.
    """

    def __init__(
        self,
        probes: Sequence[Probe] | Mapping[str, Probe],
        top_k: int = 20,
        k_neighbors: int = 10,
        embedding: EmbeddingKind = "latent",
        log_every: int = 1,
        prefix: str = "behavior",
        chunk_size: int = 2048,
        strict: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        items = list(probes.items()) if isinstance(probes, Mapping) else [(f"probe_{i}", p) for i, p in enumerate(probes)]
        if not items:
            raise ValueError("BehaviorTimelineCallback needs at least one probe")
        if log_every < 1 or top_k < 1 or k_neighbors < 1:
            raise ValueError("log_every, top_k and k_neighbors must be positive")
        self.probes: dict[str, ActionObjective] = {str(name): ActionObjective(obs, action) for name, (obs, action) in items}
        self.top_k = top_k
        self.k_neighbors = k_neighbors
        self.embedding: EmbeddingKind = embedding
        self.log_every = log_every
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.strict = strict
        #: One dict per probe and scored iteration: ``num_timesteps``, ``probe`` (name) and the logged values.
        self.history: list[dict[str, Any]] = []
        self._iteration = 0

    def _init_callback(self) -> None:
        self._iteration = 0

    def _on_step(self) -> bool:
        return True

    def _probe_observations(self, objective: ActionObjective) -> NumpyObs:
        obs, _ = self.model.policy.obs_to_tensor(objective.observations)
        if isinstance(obs, dict):
            return {key: o.cpu().numpy() for key, o in obs.items()}
        return obs.cpu().numpy()

    def _on_rollout_end(self) -> None:
        self._iteration += 1
        if self._iteration % self.log_every != 0:
            return
        try:
            self._score()
        except Exception as exc:
            if self.strict:
                raise
            warnings.warn(f"{type(self).__name__} skipped an iteration: {exc!r}", RuntimeWarning)

    def _score(self) -> None:
        policy = _policy(self.model)
        records = RolloutRecords.from_buffer(self.model.rollout_buffer)  # type: ignore[attr-defined]
        embeddings = policy_embeddings(policy, records.observations, self.embedding, self.chunk_size)
        actions = np.asarray(records.actions).reshape(records.n, -1)
        for name, objective in self.probes.items():
            scores = model_influence_scores(self.model, records, objective, self.chunk_size).reshape(-1)
            values = self._measure(objective, scores, embeddings, actions)
            values["log_prob"] = objective.value(policy, records, self.chunk_size)
            for key, value in values.items():
                if np.isfinite(value):
                    self.logger.record(f"{self.prefix}/{name}/{key}", value, exclude=TIMELINE_EXCLUDE)
            self.history.append({"num_timesteps": self.num_timesteps, "probe": name, **values})

    def _measure(
        self, objective: ActionObjective, scores: np.ndarray, embeddings: np.ndarray, actions: np.ndarray
    ) -> dict[str, float]:
        policy = _policy(self.model)
        probe_emb = policy_embeddings(policy, self._probe_observations(objective), self.embedding, self.chunk_size)
        finite = np.isfinite(scores)
        order = np.flatnonzero(finite)[np.argsort(-scores[finite], kind="stable")]
        top = order[: min(self.top_k, order.size)]

        # distance / cosine similarity of every record to its nearest probe state
        dist = np.sqrt(np.maximum(((embeddings[:, None, :] - probe_emb[None, :, :]) ** 2).sum(-1), 0.0)).min(axis=1)
        norms = np.linalg.norm(embeddings, axis=1)[:, None] * np.linalg.norm(probe_emb, axis=1)[None, :]
        cosine = ((embeddings @ probe_emb.T) / np.maximum(norms, 1e-12)).max(axis=1)

        probe_actions = np.asarray(objective.actions, dtype=np.float64).reshape(probe_emb.shape[0], -1)
        match = np.zeros(len(actions), dtype=bool)
        for a in probe_actions:
            match |= np.all(np.isclose(actions.astype(np.float64), a[None, :]), axis=1)

        finite_scores = scores[finite]
        mean_dist = float(dist.mean()) if dist.size else float("nan")
        out = {
            "top_action_match": float(match[top].mean()) if top.size else float("nan"),
            "top_similarity": float(cosine[top].mean()) if top.size else float("nan"),
            "mean_similarity": float(cosine.mean()) if cosine.size else float("nan"),
            "top_distance_ratio": float(dist[top].mean()) / mean_dist if top.size and mean_dist > 0 else float("nan"),
            "roughness": roughness(np.where(finite, scores, np.nan), embeddings, self.k_neighbors),
            "positive_fraction": float(np.mean(finite_scores > 0)) if finite_scores.size else float("nan"),
            "score_scale": float(np.abs(finite_scores).max()) if finite_scores.size else float("nan"),
            "score_abs_mean": float(np.abs(finite_scores).mean()) if finite_scores.size else float("nan"),
        }
        return out
