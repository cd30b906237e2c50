"""
The IIF step in one place: :class:`InfluenceFilterMixin` scores the full rollout buffer at ``theta_k``, decides which
records to keep, reports, and hands the kept records to the parent algorithm's own, unchanged ``train()``.

Each IIF algorithm is this mixin combined with its parent (``class InfluencePPO(InfluenceFilterMixin, PPO)``), with
an explicit constructor; the buffers (:mod:`sb3_influence.buffers`) make the parent's ``get()`` yield only the kept
records. One iteration, end to end (``train``)::

    records = RolloutRecords.from_buffer(rollout_buffer)         # the buffer as collected, at theta_k
    scores  = cross-fitted or plain TracIn scores of every record  # scoring.py (one gradient, JVPs)
    keep    = adaptive_, reliability_ or filter_mask(...)          # filtering.py (the rule)
    keep    = round_to_minibatches(keep, ...)                      # no update on a few records
    rollout_buffer.set_keep_mask(keep)                             # buffers.py
    Parent.train(self)                                             # the parent's update, on the kept records
"""

import inspect
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecMonitor, unwrap_vec_wrapper

from sb3_influence.buffers import FILTERED_BUFFERS, is_filtering_buffer
from sb3_influence.filtering import (
    CROSSFIT_MODES,
    adaptive_filter_mask,
    check_filter_args,
    filter_mask,
    reliability_filter_mask,
    round_to_minibatches,
)
from sb3_influence.objectives import InfluenceObjective, ReturnObjective
from sb3_influence.records import RolloutRecords
from sb3_influence.scoring import (
    ADVANTAGE_NORMS,
    INFLUENCE_LOSSES,
    PRECONDITIONERS,
    minibatch_groups,
    model_crossfit_scores,
    model_influence_scores,
)

#: ``filter_fraction`` when none is given, per ``filter_mode``: the adaptive rule is capped by its test only.
DEFAULT_FILTER_FRACTIONS: dict[str, float] = {
    "adaptive": 1.0,
    "reliability": 0.5,
    "negative": 0.125,
    "all": 0.125,
    "random": 0.125,
}
#: Which scores rank the records the ``"reliability"`` rule drops (``influence_ranking``): the cross-fitted scores
#: (without each record's influence on itself) or the plain TracIn scores (the paper's; the default).
INFLUENCE_RANKINGS = ("crossfit", "plain")
#: ``filter_min_reliability`` when none is given, per cross-fitted ``filter_mode``: the reliability rule's share
#: ``max(filter_min_fraction, p * clip(rho, 0, 1))`` needs no cut-off, so that its floor applies at any ``rho``.
DEFAULT_MIN_RELIABILITIES: dict[str, float] = {"adaptive": 0.0, "reliability": float("-inf")}
#: ``filter_min_fraction`` when none is given: the paper's smallest p on its tasks with discrete actions (MiniGrid).
DEFAULT_MIN_FRACTION = 0.125


@dataclass(frozen=True)
class InfluenceReport:
    """
    What the last IIF step saw and did (``model.last_influence``).

    :param scores: Influence scores ``(n_steps, n_envs)`` at ``theta_k`` (read-only).
    :param kept: Boolean mask ``(n_steps, n_envs)`` of the records the update used (read-only).
    :param seconds: Wall-clock time of the scoring (gradient + JVP), in seconds.
    :param filter_seconds: Wall-clock time of the keep/drop decision, in seconds.
    :param num_timesteps: ``model.num_timesteps`` when the buffer was scored.
    :param finite: Whether every record had a finite reward, advantage, return and score (records that did not
        were left out of the update).
    :param update_seconds: Wall-clock time of PPO's update on the kept records (``None`` until it ran; also
        ``None`` when no record was left to update on and the update was skipped).
    :param reliability: The adaptive rule's split reliability of the cross-fitted scores (NaN in the fixed modes).
    :param noise_std: The adaptive rule's pooled standard error of the cross-fitted scores (NaN in the fixed modes).
    :param n_nonfinite: Number of records left out because their data or score was not finite.
    :param gated: Whether a cross-fitted rule dropped nothing because training had seen no outcome variation yet:
        fewer than two recent episodes, or all with the same return (:meth:`InfluenceFilterMixin.no_outcome_variation`).
    """

    scores: np.ndarray
    kept: np.ndarray
    seconds: float
    filter_seconds: float = 0.0
    num_timesteps: int = 0
    finite: bool = True
    update_seconds: float | None = None
    reliability: float = float("nan")
    noise_std: float = float("nan")
    n_nonfinite: int = 0
    gated: bool = False

    def __post_init__(self) -> None:
        for name in ("scores", "kept"):
            array = np.array(getattr(self, name), copy=True)
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        if self.kept.shape != self.scores.shape or self.kept.dtype != np.bool_:
            raise ValueError(f"kept must be a boolean mask shaped like scores {self.scores.shape}")

    @property
    def n_kept(self) -> int:
        """Number of records the update used."""
        return int(np.count_nonzero(self.kept))

    @property
    def n_dropped(self) -> int:
        """Number of records the filter dropped."""
        return self.kept.size - self.n_kept


@runtime_checkable
class SupportsInfluence(Protocol):
    """
    What the diagnostics callbacks need of a model that filters its rollouts (every IIF algorithm of the library):
    the report of its last IIF step and a way to score its buffer.
    """

    last_influence: InfluenceReport | None

    def compute_influence(self, objective: InfluenceObjective | None = None) -> np.ndarray:
        """
        Scores of every record in the current, full rollout buffer at the current parameters.

        :param objective: What influence is measured against (default: the model's).
        :return: Scores ``(n_steps, n_envs)``.
        """
        ...


def check_actor_critic_policy(policy: Any, algorithm: str) -> None:
    """
    Raise a ``ValueError`` naming the policy if influence cannot be computed for it by PPO's and A2C's route
    (an ``ActorCriticPolicy`` whose ``evaluate_actions`` takes ``(obs, actions)``).

    :param policy: The policy.
    :param algorithm: The algorithm's name, for the message.
    """
    name = type(policy).__name__
    if not isinstance(policy, ActorCriticPolicy):
        raise ValueError(
            f"{algorithm} supports ActorCriticPolicy subclasses only, got {name} (for action masks use InfluenceMaskablePPO)"
        )
    required = [
        p.name
        for p in inspect.signature(policy.evaluate_actions).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 2:
        raise ValueError(
            f"{algorithm} does not support {name}: its evaluate_actions needs {required}, not just (obs, actions) "
            "(for recurrent policies use InfluenceRecurrentPPO)"
        )


class InfluenceFilterMixin:
    """
    Iterative Influence-based Filtering for an on-policy algorithm: mix in before the parent class
    (``class InfluenceA2C(InfluenceFilterMixin, A2C)``) and call :meth:`_init_influence` in the constructor before
    the parent's ``__init__``. The parent's ``train()`` then runs on the kept records of every rollout.

    The settings (documented in :class:`~sb3_influence.InfluencePPO`) are attributes: ``filter_fraction``,
    ``filter_mode``, ``filter_confidence``, ``filter_min_reliability``, ``filter_min_fraction``,
    ``filter_outcome_gate``, ``filter_gate_rollouts``, ``influence_folds``, ``filter_whole_minibatches``,
    ``influence_objective``, ``influence_chunk_size``, ``influence_preconditioner``, ``influence_loss``,
    ``influence_advantage_norm``, ``influence_ranking``. Scores use the parent's own loss settings (``ent_coef``,
    ``vf_coef``, ``normalize_advantage``).

    Hooks for the host algorithm: :meth:`_default_buffer_classes`, :meth:`_minibatch_size`,
    :meth:`_check_influence_policy`, :meth:`_replace_rollout_buffer`.
    """

    # Provided by the host algorithm (SB3's OnPolicyAlgorithm).
    rollout_buffer: Any
    rollout_buffer_class: Any
    policy: Any
    observation_space: spaces.Space
    action_space: spaces.Space
    seed: int | None
    num_timesteps: int
    logger: Any
    ep_info_buffer: Any  # SB3's deque of the recent episodes' Monitor infos (None before the first learn())

    filter_fraction: float | None
    filter_mode: str
    filter_confidence: float
    filter_min_reliability: float | None
    filter_min_fraction: float | None
    filter_outcome_gate: bool
    filter_gate_rollouts: int
    influence_folds: int
    filter_whole_minibatches: bool
    influence_objective: InfluenceObjective | None
    influence_chunk_size: int
    influence_preconditioner: str
    influence_loss: str
    influence_advantage_norm: str
    influence_ranking: str | None
    last_influence: InfluenceReport | None

    def _init_influence(
        self,
        filter_fraction: float | None,
        filter_mode: str,
        filter_confidence: float,
        filter_min_reliability: float | None,
        filter_min_fraction: float | None,
        filter_outcome_gate: bool,
        influence_folds: int,
        filter_whole_minibatches: bool,
        influence_objective: InfluenceObjective | None,
        influence_chunk_size: int,
        influence_preconditioner: str,
        influence_loss: str,
        influence_advantage_norm: str,
        influence_ranking: str | None = None,
        filter_gate_rollouts: int = 2,
    ) -> None:
        """Set and check the IIF settings (before the parent's constructor, so bad input fails before any env is built)."""
        self.filter_fraction = filter_fraction
        self.filter_mode = filter_mode
        self.filter_confidence = filter_confidence
        self.filter_min_reliability = filter_min_reliability
        self.filter_min_fraction = filter_min_fraction
        self.filter_outcome_gate = filter_outcome_gate
        self.filter_gate_rollouts = filter_gate_rollouts
        self.influence_folds = influence_folds
        self.filter_whole_minibatches = filter_whole_minibatches
        self.influence_objective = influence_objective
        self.influence_chunk_size = influence_chunk_size
        self.influence_preconditioner = influence_preconditioner
        self.influence_loss = influence_loss
        self.influence_advantage_norm = influence_advantage_norm
        self.influence_ranking = influence_ranking
        self._check_influence_args()
        self.last_influence = None

    # ----------------------------------------------------------------------------------------------- hooks
    def _default_buffer_classes(self) -> tuple[type, type]:
        """The parent's rollout buffer classes when ``rollout_buffer_class`` is ``None``: ``(plain, Dict)``."""
        return RolloutBuffer, DictRolloutBuffer

    def _minibatch_size(self) -> int | None:
        """The minibatch size of the parent's update, or ``None`` for one batch of all records (A2C, ``batch_size=None``)."""
        batch = getattr(self, "batch_size", None)
        return None if batch is None else int(batch)

    def _rounds_to_minibatches(self) -> bool:
        """Whether ``filter_whole_minibatches`` applies (not where minibatches are masked sequences)."""
        return self._minibatch_size() is not None

    def _check_influence_policy(self) -> None:
        """Raise a ``ValueError`` if influence cannot be computed for ``self.policy``."""
        check_actor_critic_policy(self.policy, type(self).__name__)

    def _replace_rollout_buffer(self) -> None:
        """Make ``self.rollout_buffer`` a filtering buffer, for parents that build it without ``rollout_buffer_class``."""
        raise ValueError(f"{type(self).__name__} built a {type(self.rollout_buffer).__name__}, which cannot filter")

    def _parent_name(self) -> str:
        """The parent algorithm's class name (the first SB3 or sb3-contrib class in the MRO)."""
        for cls in type(self).__mro__:
            if cls.__module__.split(".")[0] in ("stable_baselines3", "sb3_contrib"):
                return cls.__name__
        return type(self).__name__

    # ------------------------------------------------------------------------------------------- setup
    def _check_influence_args(self) -> None:
        # Also run by _setup_model: load(**kwargs) sets attributes without the constructor.
        check_filter_args(0.0 if self.filter_fraction is None else self.filter_fraction, self.filter_mode)
        if self.filter_fraction is not None:
            self.filter_fraction = float(self.filter_fraction)
        objective, chunk_size = self.influence_objective, self.influence_chunk_size
        if objective is not None and not isinstance(objective, InfluenceObjective):
            raise ValueError(f"influence_objective must be an InfluenceObjective, got {type(objective).__name__}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"influence_chunk_size must be a positive integer, got {chunk_size!r}")
        if not 0.0 < float(self.filter_confidence) < 1.0:
            raise ValueError(f"filter_confidence must be in (0, 1), got {self.filter_confidence!r}")
        if not isinstance(self.filter_outcome_gate, (bool, np.bool_)):
            raise ValueError(f"filter_outcome_gate must be a bool, got {self.filter_outcome_gate!r}")
        rollouts = self.filter_gate_rollouts
        if isinstance(rollouts, bool) or not isinstance(rollouts, (int, np.integer)) or rollouts < 1:
            raise ValueError(f"filter_gate_rollouts must be a positive integer, got {rollouts!r}")
        min_reliability = self.filter_min_reliability
        if min_reliability is not None and (
            isinstance(min_reliability, bool) or not isinstance(min_reliability, (int, float)) or np.isnan(min_reliability)
        ):
            raise ValueError(f"filter_min_reliability must be a number or None, got {min_reliability!r}")
        min_fraction = self.filter_min_fraction
        if min_fraction is not None and (
            isinstance(min_fraction, bool) or not isinstance(min_fraction, (int, float)) or not 0.0 <= min_fraction <= 1.0
        ):
            raise ValueError(f"filter_min_fraction must be a number in [0, 1] or None, got {min_fraction!r}")
        if min_fraction is not None and min_fraction > 0 and self.filter_mode != "reliability":
            raise ValueError(f"filter_min_fraction applies to filter_mode='reliability' only, got {self.filter_mode!r}")
        folds = self.influence_folds
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 3:
            raise ValueError(f"influence_folds must be an integer >= 3, got {folds!r}")
        if self.filter_mode in CROSSFIT_MODES and objective is not None and not isinstance(objective, ReturnObjective):
            raise ValueError(
                f"filter_mode={self.filter_mode!r} cross-fits the return objective; got influence_objective={objective!r} "
                "(use a fixed-p filter_mode with another objective)"
            )
        if self.influence_loss not in INFLUENCE_LOSSES:
            raise ValueError(f"Unknown influence_loss {self.influence_loss!r}, expected one of {INFLUENCE_LOSSES}")
        if self.influence_advantage_norm not in ADVANTAGE_NORMS:
            raise ValueError(
                f"Unknown influence_advantage_norm {self.influence_advantage_norm!r}, expected one of {ADVANTAGE_NORMS}"
            )
        if self.influence_ranking is not None and self.influence_ranking not in INFLUENCE_RANKINGS:
            raise ValueError(f"Unknown influence_ranking {self.influence_ranking!r}, expected one of {INFLUENCE_RANKINGS}")
        if self.influence_ranking is not None and self.filter_mode not in CROSSFIT_MODES:
            raise ValueError(f"influence_ranking applies to the cross-fitted modes {CROSSFIT_MODES}, got {self.filter_mode!r}")
        if self.influence_ranking == "plain" and self.filter_mode != "reliability":
            raise ValueError(f"influence_ranking='plain' applies to filter_mode='reliability' only, got {self.filter_mode!r}")
        if self.influence_preconditioner not in PRECONDITIONERS:
            raise ValueError(
                f"Unknown influence_preconditioner {self.influence_preconditioner!r}, expected one of {PRECONDITIONERS}"
            )

    def _setup_model(self) -> None:
        if self.influence_ranking == "crossfit" and self.filter_mode not in CROSSFIT_MODES:
            # a zip saved while "crossfit" was every mode's default ranking: the fixed-p modes rank by the plain scores
            self.influence_ranking = None
        self._check_influence_args()
        # Plain parent buffers (also what a parent's zip stores) become their filtering variants.
        buffer_class: Any = self.rollout_buffer_class
        if buffer_class is None:
            plain, dict_class = self._default_buffer_classes()
            buffer_class = dict_class if isinstance(self.observation_space, spaces.Dict) else plain
        buffer_class = FILTERED_BUFFERS.get(buffer_class, buffer_class)
        if not is_filtering_buffer(buffer_class):
            raise ValueError(
                f"{type(self).__name__} cannot filter with rollout_buffer_class="
                f"{getattr(buffer_class, '__name__', buffer_class)}: use the parent's default buffer or a subclass "
                "of sb3_influence.buffers.FilterMixin"
            )
        self.rollout_buffer_class = buffer_class
        super()._setup_model()  # type: ignore[misc]
        if not is_filtering_buffer(type(self.rollout_buffer)):
            self._replace_rollout_buffer()
        self._check_influence_policy()
        if self.influence_preconditioner == "adam" and not isinstance(self.policy.optimizer, (th.optim.Adam, th.optim.AdamW)):
            raise ValueError(
                f"influence_preconditioner='adam' needs an Adam or AdamW optimizer, got {type(self.policy.optimizer).__name__}"
            )
        self._filter_rng = np.random.default_rng(self.seed)
        self._gate_streak = 0  # consecutive rollouts with outcome variation (the outcome gate's count)
        self._abstention_warned = False
        self._unobservable_warned = False

    def _excluded_save_params(self) -> list[str]:
        excluded = ["last_influence", "_filter_rng", "_gate_streak", "_abstention_warned", "_unobservable_warned"]
        return [*super()._excluded_save_params(), *excluded]  # type: ignore[misc]

    def no_outcome_variation(self) -> bool:
        """
        Whether the recent episodes show no outcome variation: fewer than two of them, or all with the same return
        (Acrobot or a sparse-reward task before the first success, or after a collapse; a task already solved). The
        advantages then only measure the value function's errors, and the cross-fitted rules drop nothing:
        filtering such buffers delayed Acrobot's first success, and one drop in a first rollout that ended no
        episode sent a panel seed into a run that never succeeded (benchmarks/RESULTS.md).

        The recent episodes are those that ended during the last rollout, and at least the last two (SB3's
        ``ep_info_buffer``): a rollout shorter than an episode may end none. Not the whole ``ep_info_buffer`` (the
        last ``stats_window_size`` episodes): its old successes kept the gate open for dozens of iterations after
        an Acrobot panel seed stopped succeeding.
        """
        returns = [float(info["r"]) for info in (self.ep_info_buffer or ()) if "r" in info]
        returns = returns[-max(2, self._episodes_in_last_rollout()) :]
        return len(returns) < 2 or max(returns) == min(returns)

    def _episodes_in_last_rollout(self) -> int:
        """Number of episodes (of any env) that ended during the last collected rollout (0 before the first)."""
        starts = getattr(self.rollout_buffer, "episode_starts", None)
        last = getattr(self, "_last_episode_starts", None)
        if starts is None or last is None:
            return 0
        # episode_starts[t] marks a step after an episode's end: rows 1.. end episodes of this rollout, row 0 of the
        # previous one; _last_episode_starts marks the episodes that ended at the rollout's last step
        return int(np.count_nonzero(np.asarray(starts)[1:]) + np.count_nonzero(np.asarray(last)))

    def _outcome_gate_closed(self) -> bool:
        """
        Whether the outcome gate holds a cross-fitted rule back this iteration: ``filter_outcome_gate`` is on and
        fewer than ``filter_gate_rollouts`` consecutive rollouts, this one included, showed outcome variation
        (:meth:`no_outcome_variation`). With 2, the rollout of a first success is never filtered. Call once per
        iteration (it counts the rollouts). Without ``Monitor`` the returns are unseen: the gate stays open, with one
        warning.
        """
        if self.filter_mode not in CROSSFIT_MODES or not self.filter_outcome_gate:
            return False
        if not self._outcomes_observable():
            if not self._unobservable_warned:
                warnings.warn(
                    "filter_outcome_gate cannot see episode returns (the env is not wrapped in Monitor or VecMonitor): "
                    "the gate stays open",
                    UserWarning,
                    stacklevel=3,
                )
                self._unobservable_warned = True
            return False
        self._gate_streak = 0 if self.no_outcome_variation() else self._gate_streak + 1
        return self._gate_streak < self.filter_gate_rollouts

    def _outcomes_observable(self) -> bool:
        """Whether episode returns reach ``ep_info_buffer``: the training env is wrapped in ``Monitor`` or ``VecMonitor``."""
        env = self.get_env()  # type: ignore[attr-defined]
        if env is None:
            return False
        return unwrap_vec_wrapper(env, VecMonitor) is not None or any(env.env_is_wrapped(Monitor))

    # --------------------------------------------------------------------------------------------- the IIF step
    def compute_influence(self, objective: InfluenceObjective | None = None) -> np.ndarray:
        """
        Influence scores ``I_i`` (docs page "How IIF works") of every record in the current, full rollout buffer
        at the current parameters.

        Safe to call from a callback's ``_on_rollout_end``: it reads the buffer without changing it, uses no
        random numbers and leaves the parameters and their gradients as they were.

        :param objective: What influence is measured against; defaults to the model's :attr:`objective`
            (the return objective unless ``influence_objective`` is set), e.g. an :class:`~sb3_influence.ActionObjective`.
        :return: Scores of shape ``(n_steps, n_envs)``, the layout of ``rollout_buffer.advantages``;
            positive = a gradient step on the record increases the objective.
        """
        return model_influence_scores(self, objective=self.objective if objective is None else objective)

    def _crossfit_abstention(self) -> str | None:
        """
        Why the cross-fitted rules drop nothing for this model, or ``None`` when they may filter (the first IIF step
        that abstains says why in a ``UserWarning``).

        Continuous (``Box``) actions: on the no-harm panel both rules cost PPO return on Pendulum, with gSDE (where
        one noise matrix per rollout also makes the folds dependent) and without, and on held-out seeds
        (benchmarks/RESULTS.md), so the default abstains there.
        """
        if isinstance(self.action_space, spaces.Box):
            return "continuous (Box) actions, where filtering cost PPO return on the no-harm panel"
        if not self._can_cross_fit():
            return f"n_steps={self.n_steps} is fewer than influence_folds={self.influence_folds}, too short to cross-fit"  # type: ignore[attr-defined]
        return None

    def _can_cross_fit(self) -> bool:
        """Whether the buffer has at least one step per env for each of the ``influence_folds`` folds."""
        return int(self.n_steps) >= self.influence_folds  # type: ignore[attr-defined]

    def _influence_advantage_groups(self, n: int) -> np.ndarray | None:
        """
        ``influence_advantage_norm="minibatch"``: the minibatch of each of the ``n`` records in a random permutation
        drawn from ``seed`` and ``num_timesteps`` (the same for every score of one rollout, the diagnostics' included;
        the global RNG is not touched). ``None`` (whole-buffer standardisation) otherwise, and where the update has no
        record minibatches.
        """
        batch = self._minibatch_size()
        if self.influence_advantage_norm != "minibatch" or batch is None or not self._rounds_to_minibatches():
            return None
        seed = 0 if self.seed is None else int(self.seed) % 2**32
        return minibatch_groups(n, batch, np.random.default_rng([seed, int(self.num_timesteps)]))

    @property
    def fraction(self) -> float:
        """The filter fraction in use: ``filter_fraction``, or the mode's default when it is ``None``."""
        if self.filter_fraction is None:
            return DEFAULT_FILTER_FRACTIONS[self.filter_mode]
        return float(self.filter_fraction)

    @property
    def min_reliability(self) -> float:
        """The reliability cut-off in use: ``filter_min_reliability``, or the mode's default when it is ``None``."""
        if self.filter_min_reliability is None:
            return DEFAULT_MIN_RELIABILITIES.get(self.filter_mode, 0.0)
        return float(self.filter_min_reliability)

    @property
    def min_fraction(self) -> float:
        """
        The reliability rule's least share in use: ``filter_min_fraction`` (default ``DEFAULT_MIN_FRACTION`` in
        ``"reliability"`` mode, 0 in the others), never above :attr:`fraction`.
        """
        if self.filter_min_fraction is None:
            return min(DEFAULT_MIN_FRACTION, self.fraction) if self.filter_mode == "reliability" else 0.0
        return min(float(self.filter_min_fraction), self.fraction)

    @property
    def objective(self) -> InfluenceObjective:
        """
        The objective in use: ``influence_objective``, or when it is ``None``, the return objective, centred
        (:class:`~sb3_influence.ReturnObjective` with ``center=True``) in ``"reliability"`` mode, InfluencePPO's
        default, and uncentred in the others (the fixed-p modes score as the paper does). The centred objective
        is the default where it was measured to help (benchmarks/RESULTS.md, "A centred objective").
        """
        if self.influence_objective is not None:
            return self.influence_objective
        return ReturnObjective(center=self.filter_mode == "reliability")

    @property
    def ranking(self) -> str:
        """
        The scores the rule ranks by: ``influence_ranking``, or when it is ``None``, ``"crossfit"`` in ``"adaptive"``
        mode (its test needs the cross-fitted scores) and ``"plain"`` in the others (the default ``"reliability"``
        rule, and the fixed-p modes, which rank by the plain TracIn scores as the paper does).
        """
        if self.influence_ranking is not None:
            return self.influence_ranking
        return "crossfit" if self.filter_mode == "adaptive" else "plain"

    def _score_rollout(self, records: RolloutRecords) -> tuple[np.ndarray, np.ndarray, float, float]:
        """
        The scores of the IIF step: ``(scores, rank_by, reliability, noise_std)``. ``scores`` are the TracIn scores
        that are reported; the rule ranks by ``rank_by`` (the plain scores, or the cross-fitted ones where
        :attr:`ranking` is ``"crossfit"``).
        """
        if self.filter_mode in CROSSFIT_MODES and self._can_cross_fit():
            crossfit = model_crossfit_scores(self, records, self.influence_folds)
            rank_by = crossfit.total if self.ranking == "plain" else crossfit.scores
            return crossfit.total, rank_by, crossfit.reliability, crossfit.noise_std
        scores = model_influence_scores(self, records, self.objective)
        return scores, scores, float("nan"), float("nan")

    def _filter_rollout(self) -> InfluenceReport:
        """Score the full buffer at ``theta_k`` and set the buffer's keep mask (the IIF step)."""
        reason = self._crossfit_abstention() if self.filter_mode in CROSSFIT_MODES and self.fraction > 0 else None
        if reason is not None and not self._abstention_warned:
            warnings.warn(
                f"filter_mode={self.filter_mode!r} drops nothing here: {reason}. Training is then {self._parent_name()}'s; "
                "use a fixed-p filter_mode (e.g. filter_mode='negative', filter_fraction=0.125) to filter anyway.",
                UserWarning,
                stacklevel=2,
            )
            self._abstention_warned = True
        start = time.perf_counter()
        records = RolloutRecords.from_buffer(self.rollout_buffer)
        scores, rank_by, reliability, noise_std = self._score_rollout(records)
        gated = reason is None and self._outcome_gate_closed()
        # the cross-fitted rules drop nothing when given a NaN reliability: abstention or a closed gate
        rule_reliability = float("nan") if reason is not None or gated else reliability
        scored = time.perf_counter()
        usable = np.isfinite(rank_by) & records.finite.reshape(rank_by.shape)
        n_nonfinite = int(rank_by.size - np.count_nonzero(usable))
        if n_nonfinite:
            warnings.warn(
                f"{n_nonfinite} of {rank_by.size} record(s) have a non-finite reward, advantage, return or influence "
                "score: they are left out of this iteration's update",
                RuntimeWarning,
            )
        keep = np.zeros(rank_by.shape, dtype=bool)
        if usable.any():
            candidates = rank_by[usable]
            batch = self._minibatch_size()
            # never less than one minibatch to train on (two records for a whole-buffer update: one has no std)
            min_keep = min(batch if batch is not None else 2, candidates.size)
            if self.filter_mode == "adaptive":
                keep[usable] = adaptive_filter_mask(
                    candidates,
                    noise_std,
                    rule_reliability,
                    self.fraction,
                    self.filter_confidence,
                    self.min_reliability,
                    min_keep,
                )
            elif self.filter_mode == "reliability":
                keep[usable] = reliability_filter_mask(
                    candidates,
                    rule_reliability,
                    self.fraction,
                    self.min_reliability,
                    min_keep,
                    self.min_fraction,
                )
            else:
                keep[usable] = filter_mask(candidates, self.fraction, self.filter_mode, min_keep, self._filter_rng)
            if self.filter_whole_minibatches and batch is not None and self._rounds_to_minibatches():
                keep = round_to_minibatches(keep, np.where(usable, rank_by, np.nan), batch)
        report = InfluenceReport(
            scores=scores,
            kept=keep,
            seconds=scored - start,
            filter_seconds=time.perf_counter() - scored,
            num_timesteps=self.num_timesteps,
            finite=n_nonfinite == 0,
            reliability=reliability,
            noise_std=noise_std,
            n_nonfinite=n_nonfinite,
            gated=gated,
        )
        if keep.any():
            self.rollout_buffer.set_keep_mask(None if keep.all() else keep)
        self.last_influence = report
        self.logger.record("influence/dropped", report.n_dropped)
        self.logger.record("influence/kept_fraction", report.n_kept / rank_by.size)
        self.logger.record("influence/scoring_time", report.seconds)
        self.logger.record("influence/nonfinite_records", n_nonfinite)
        if self.filter_mode in CROSSFIT_MODES:
            self.logger.record("influence/reliability", reliability)
            self.logger.record("influence/noise_std", noise_std)
            self.logger.record("influence/gated", int(gated))
        return report

    def train(self) -> None:
        """Score and filter the rollout buffer, then run the parent's update on the kept records."""
        report = self._filter_rollout()
        if report.n_kept == 0:
            warnings.warn("No record with finite data and scores is left: this iteration's update is skipped", RuntimeWarning)
            return
        start = time.perf_counter()
        super().train()  # type: ignore[misc]
        self.last_influence = replace(report, update_seconds=time.perf_counter() - start)
