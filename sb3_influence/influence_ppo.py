"""InfluencePPO: PPO with Iterative Influence-based Filtering (IIF)."""

import inspect
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_influence.buffers import FilteredDictRolloutBuffer, FilteredRolloutBuffer, FilterMixin
from sb3_influence.filtering import adaptive_filter_mask, check_filter_args, filter_mask, round_to_minibatches
from sb3_influence.objectives import InfluenceObjective, ReturnObjective
from sb3_influence.records import RolloutRecords
from sb3_influence.scoring import PRECONDITIONERS, model_crossfit_scores, model_influence_scores

SelfInfluencePPO = TypeVar("SelfInfluencePPO", bound="InfluencePPO")

#: ``filter_fraction`` when none is given, per ``filter_mode``: the adaptive rule is capped by its test only.
DEFAULT_FILTER_FRACTIONS: dict[str, float] = {"adaptive": 1.0, "negative": 0.125, "all": 0.125, "random": 0.125}


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


def _is_filtering_buffer(buffer_class: Any) -> bool:
    return isinstance(buffer_class, type) and issubclass(buffer_class, FilterMixin) and issubclass(buffer_class, RolloutBuffer)


def _check_policy(policy: BasePolicy) -> None:
    """Raise a ``ValueError`` naming the policy if influence cannot be computed for it."""
    name = type(policy).__name__
    if not isinstance(policy, ActorCriticPolicy):
        raise ValueError(f"InfluencePPO supports ActorCriticPolicy subclasses only, got {name}")
    # Scoring calls policy.evaluate_actions(obs, actions), as PPO's train() does.
    required = [
        p.name
        for p in inspect.signature(policy.evaluate_actions).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 2:
        raise ValueError(
            f"InfluencePPO does not support {name}: its evaluate_actions needs {required}, not just (obs, actions) "
            "(recurrent policies belong to sb3-contrib's RecurrentPPO, which has no influence support yet)"
        )


class InfluencePPO(PPO):
    """
    PPO with Iterative Influence-based Filtering (IIF), from "A Snapshot of Influence: A Local Data
    Attribution Framework for Online Reinforcement Learning" (Hu et al., NeurIPS 2025, arXiv 2505.19281).

    Every iteration, after the rollout is collected and before the update, each record's TracIn influence
    on the return objective is computed at the current parameters (one gradient and one forward-mode JVP,
    see :func:`~sb3_influence.scoring.influence_scores`), the most harmful records are dropped
    (:func:`~sb3_influence.filtering.filter_mask`), and PPO's own update runs on the kept records only.
    With ``filter_fraction=0`` training is bit-identical to :class:`~stable_baselines3.PPO` under the same seed.

    The PPO parameters are documented in :class:`~stable_baselines3.PPO`; they all behave as there.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy or an ``ActorCriticPolicy`` subclass)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, a constant or a schedule of the progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
    :param batch_size: Minibatch size
    :param n_epochs: Number of epochs when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: Clipping parameter, a constant or a schedule
    :param clip_range_vf: Clipping parameter for the value function (None: no clipping)
    :param normalize_advantage: Whether to normalize the advantage (also used in the per-record loss)
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
    :param rollout_buffer_class: Rollout buffer class; ``None``, ``RolloutBuffer`` and ``DictRolloutBuffer`` select
        the filtering variants; a custom class must subclass :class:`~sb3_influence.buffers.FilterMixin`
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param target_kl: Limit the KL divergence between updates
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param filter_fraction: The fraction ``p`` in [0, 1]: in ``"adaptive"`` mode the most that may be dropped, as a
        fraction of the negatively scored records (default 1: the significance test alone decides); in
        ``"negative"`` mode the fraction of the negatively scored records to drop (default 0.125); in ``"all"`` and
        ``"random"`` modes the fraction of all records. 0 disables filtering (scores are still computed and reported).
    :param filter_mode: ``"adaptive"`` (default: drop only the records whose cross-fitted score is significantly
        negative, see :func:`~sb3_influence.filtering.adaptive_filter_mask`), ``"negative"`` (the paper's rule: drop
        the ``floor(p * N_neg)`` lowest-scored records), ``"all"`` (drop the ``floor(p * N)`` lowest-scored) or
        ``"random"`` (drop ``floor(p * N)`` at random: the ablation control; uses its own RNG seeded from ``seed``,
        never the global one).
    :param filter_confidence: ``"adaptive"`` mode: the one-sided confidence that a dropped record's cross-fitted
        score is below zero.
    :param filter_min_reliability: ``"adaptive"`` mode: nothing is dropped in an iteration whose cross-fitted scores
        have a split reliability below this. The adaptive rule drops nothing (a warning says so) with continuous
        (``Box``) actions, where filtering cost PPO return on the no-harm panel.
    :param influence_folds: ``"adaptive"`` mode: number of contiguous folds of the buffer for cross-fitting (at least 3).
    :param filter_whole_minibatches: Round the number of kept records to whole minibatches
        (:func:`~sb3_influence.filtering.round_to_minibatches`), so that no epoch ends on a step over a few records.
    :param influence_objective: What influence is measured against; default :class:`~sb3_influence.ReturnObjective`.
    :param influence_chunk_size: The most records per forward pass when scoring (bounds the memory of scoring).
    :param influence_preconditioner: ``"none"`` (TracIn for SGD, the paper's) or ``"adam"`` (measure influence
        along Adam's preconditioned direction; needs an Adam/AdamW optimizer).
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }
    rollout_buffer: FilteredRolloutBuffer | FilteredDictRolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        filter_fraction: float | None = None,
        filter_mode: str = "adaptive",
        filter_confidence: float = 0.95,
        filter_min_reliability: float = 0.0,
        influence_folds: int = 3,
        filter_whole_minibatches: bool = True,
        influence_objective: InfluenceObjective | None = None,
        influence_chunk_size: int = 2048,
        influence_preconditioner: str = "none",
        _init_setup_model: bool = True,
    ):
        self.filter_fraction = filter_fraction
        self.filter_mode = filter_mode
        self.filter_confidence = filter_confidence
        self.filter_min_reliability = filter_min_reliability
        self.influence_folds = influence_folds
        self.filter_whole_minibatches = filter_whole_minibatches
        self.influence_objective = influence_objective
        self.influence_chunk_size = influence_chunk_size
        self.influence_preconditioner = influence_preconditioner
        self._check_influence_args()  # fail before the env and policy are built
        self.last_influence: InfluenceReport | None = None
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

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
        if not isinstance(self.filter_min_reliability, (int, float)) or np.isnan(self.filter_min_reliability):
            raise ValueError(f"filter_min_reliability must be a number, got {self.filter_min_reliability!r}")
        folds = self.influence_folds
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 3:
            raise ValueError(f"influence_folds must be an integer >= 3, got {folds!r}")
        if self.filter_mode == "adaptive" and objective is not None and not isinstance(objective, ReturnObjective):
            raise ValueError(
                f"filter_mode='adaptive' cross-fits the return objective; got influence_objective={objective!r} "
                "(use a fixed-p filter_mode with another objective)"
            )
        if self.influence_preconditioner not in PRECONDITIONERS:
            raise ValueError(
                f"Unknown influence_preconditioner {self.influence_preconditioner!r}, expected one of {PRECONDITIONERS}"
            )

    def _setup_model(self) -> None:
        self._check_influence_args()
        # Plain SB3 buffers (also what a PPO zip stores) become their filtering variants.
        buffer_class: Any = self.rollout_buffer_class
        if buffer_class is None or buffer_class in (RolloutBuffer, DictRolloutBuffer):
            is_dict = isinstance(self.observation_space, spaces.Dict)
            buffer_class = FilteredDictRolloutBuffer if is_dict else FilteredRolloutBuffer
        if not _is_filtering_buffer(buffer_class):
            raise ValueError(
                f"InfluencePPO cannot filter with rollout_buffer_class={getattr(buffer_class, '__name__', buffer_class)}: "
                "use RolloutBuffer/DictRolloutBuffer (the default) or a subclass of sb3_influence.buffers.FilterMixin"
            )
        self.rollout_buffer_class = buffer_class
        super()._setup_model()
        _check_policy(self.policy)
        if self.influence_preconditioner == "adam" and not isinstance(self.policy.optimizer, (th.optim.Adam, th.optim.AdamW)):
            raise ValueError(
                f"influence_preconditioner='adam' needs an Adam or AdamW optimizer, got {type(self.policy.optimizer).__name__}"
            )
        self._filter_rng = np.random.default_rng(self.seed)
        reason = self._adaptive_abstention()
        if self.filter_mode == "adaptive" and self.fraction > 0 and reason is not None:
            warnings.warn(
                f"filter_mode='adaptive' drops nothing here: {reason}. Training is then PPO's; use a fixed-p filter_mode "
                "(e.g. filter_mode='negative', filter_fraction=0.125) to filter anyway.",
                UserWarning,
                stacklevel=3,
            )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "last_influence", "_filter_rng"]

    def compute_influence(self, objective: InfluenceObjective | None = None) -> np.ndarray:
        """
        Influence scores ``I_i`` (docs page "How IIF works") of every record in the current, full rollout buffer
        at the current parameters.

        Safe to call from a callback's ``_on_rollout_end``: it reads the buffer without changing it, uses no
        random numbers and leaves the parameters and their gradients as they were.

        :param objective: What influence is measured against; defaults to the model's ``influence_objective``
            (the return objective unless set), e.g. an :class:`~sb3_influence.ActionObjective`.
        :return: Scores of shape ``(n_steps, n_envs)``, the layout of ``rollout_buffer.advantages``;
            positive = a gradient step on the record increases the objective.
        """
        if objective is None:
            objective = self.influence_objective if self.influence_objective is not None else ReturnObjective()
        return model_influence_scores(self, objective=objective)

    def _adaptive_abstention(self) -> str | None:
        """
        Why the adaptive rule drops nothing for this model, or ``None`` when it may filter.

        Continuous (``Box``) actions: on the no-harm panel both rules cost PPO return on Pendulum, with gSDE (where
        one noise matrix per rollout also makes the folds dependent) and without, and on held-out seeds
        (benchmarks/RESULTS.md), so the default abstains there.
        """
        if isinstance(self.action_space, spaces.Box):
            return "continuous (Box) actions, where filtering cost PPO return on the no-harm panel"
        return None

    @property
    def fraction(self) -> float:
        """The filter fraction in use: ``filter_fraction``, or the mode's default when it is ``None``."""
        if self.filter_fraction is None:
            return DEFAULT_FILTER_FRACTIONS[self.filter_mode]
        return float(self.filter_fraction)

    def _score_rollout(self, records: RolloutRecords) -> tuple[np.ndarray, np.ndarray, float, float]:
        """
        The scores of the IIF step: ``(scores, rank_by, reliability, noise_std)``. ``scores`` are the TracIn scores
        that are reported; the rule ranks by ``rank_by`` (the cross-fitted scores in ``"adaptive"`` mode).
        """
        if self.filter_mode == "adaptive":
            crossfit = model_crossfit_scores(self, records, self.influence_folds)
            return crossfit.total, crossfit.scores, crossfit.reliability, crossfit.noise_std
        scores = model_influence_scores(self, records, self.influence_objective)
        return scores, scores, float("nan"), float("nan")

    def _filter_rollout(self) -> InfluenceReport:
        """Score the full buffer at ``theta_k`` and set the buffer's keep mask (the IIF step)."""
        start = time.perf_counter()
        records = RolloutRecords.from_buffer(self.rollout_buffer)
        scores, rank_by, reliability, noise_std = self._score_rollout(records)
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
            min_keep = min(self.batch_size, candidates.size)  # never less than one minibatch to train on
            if self.filter_mode == "adaptive":
                keep[usable] = adaptive_filter_mask(
                    candidates,
                    noise_std,
                    float("nan") if self._adaptive_abstention() else reliability,  # NaN: the rule drops nothing
                    self.fraction,
                    self.filter_confidence,
                    self.filter_min_reliability,
                    min_keep,
                )
            else:
                keep[usable] = filter_mask(candidates, self.fraction, self.filter_mode, min_keep, self._filter_rng)
            if self.filter_whole_minibatches:
                keep = round_to_minibatches(keep, np.where(usable, rank_by, np.nan), self.batch_size)
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
        )
        if keep.any():
            self.rollout_buffer.set_keep_mask(None if keep.all() else keep)
        self.last_influence = report
        self.logger.record("influence/dropped", report.n_dropped)
        self.logger.record("influence/kept_fraction", report.n_kept / rank_by.size)
        self.logger.record("influence/scoring_time", report.seconds)
        self.logger.record("influence/nonfinite_records", n_nonfinite)
        if self.filter_mode == "adaptive":
            self.logger.record("influence/reliability", reliability)
            self.logger.record("influence/noise_std", noise_std)
        return report

    def train(self) -> None:
        """Score and filter the rollout buffer, then run PPO's update on the kept records."""
        report = self._filter_rollout()
        if report.n_kept == 0:
            warnings.warn("No record with finite data and scores is left: this iteration's update is skipped", RuntimeWarning)
            return
        start = time.perf_counter()
        super().train()
        self.last_influence = replace(report, update_seconds=time.perf_counter() - start)

    def learn(
        self: SelfInfluencePPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "InfluencePPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfInfluencePPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
