"""InfluencePPO: PPO with Iterative Influence-based Filtering (IIF)."""

from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_influence.buffers import FilteredDictRolloutBuffer, FilteredRolloutBuffer
from sb3_influence.iif import DEFAULT_FILTER_FRACTIONS, InfluenceFilterMixin, InfluenceReport
from sb3_influence.objectives import InfluenceObjective

__all__ = ["DEFAULT_FILTER_FRACTIONS", "InfluencePPO", "InfluenceReport"]

SelfInfluencePPO = TypeVar("SelfInfluencePPO", bound="InfluencePPO")


class InfluencePPO(InfluenceFilterMixin, PPO):
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
        ``"reliability"`` mode the fraction of the negatively scored records dropped when the ranking is fully
        reliable (default 0.5); in ``"negative"`` mode the fraction of the negatively scored records to drop (default
        0.125); in ``"all"`` and ``"random"`` modes the fraction of all records. 0 disables filtering (scores are still
        computed and reported).
    :param filter_mode: ``"reliability"`` (default: drop the ``floor(max(0.125, p * rho) * N_neg)`` lowest
        cross-fitted scores once outcomes vary, ``rho`` the ranking's split reliability, see
        :func:`~sb3_influence.filtering.reliability_filter_mask`),
        ``"adaptive"`` (drop only the records whose cross-fitted score is significantly negative, see
        :func:`~sb3_influence.filtering.adaptive_filter_mask`), ``"negative"`` (the paper's rule: drop the
        ``floor(p * N_neg)`` lowest-scored records), ``"all"`` (drop the ``floor(p * N)`` lowest-scored) or
        ``"random"`` (drop ``floor(p * N)`` at random: the ablation control; uses its own RNG seeded from ``seed``,
        never the global one). :class:`~sb3_influence.InfluenceA2C`, :class:`~sb3_influence.InfluenceMaskablePPO`
        and :class:`~sb3_influence.InfluenceRecurrentPPO` default to ``"adaptive"``, the rule their panels measured.
    :param filter_confidence: ``"adaptive"`` mode: the one-sided confidence that a dropped record's cross-fitted
        score is below zero.
    :param filter_min_reliability: ``"adaptive"`` and ``"reliability"`` modes: nothing is dropped in an iteration
        whose cross-fitted scores have a split reliability below this. ``None`` (default): the mode's own, 0 for
        ``"adaptive"`` and none (``-inf``) for ``"reliability"``, whose share needs no cut-off. Both cross-fitted
        rules drop nothing (a warning says so) with continuous (``Box``) actions, where filtering cost PPO return on
        the no-harm panel.
    :param filter_min_fraction: ``"reliability"`` mode: the least share of the negatively scored records dropped in
        an iteration where the rule does not abstain (the gate is open), however low the reliability:
        ``max(filter_min_fraction, p * clip(rho, 0, 1))``. ``None`` (default): 0.125, the paper's smallest p on its
        discrete-action tasks (never above ``p``); 0 for the bare reliability-scaled rule.
    :param filter_outcome_gate: ``"adaptive"`` and ``"reliability"`` modes: drop nothing in an iteration whose recent
        episodes (those that ended in the last rollout, at least the last two) all had the same return
        (:meth:`~sb3_influence.iif.InfluenceFilterMixin.no_outcome_variation`; needs a ``Monitor``-wrapped env, else
        the gate stays open with a warning).
    :param filter_gate_rollouts: With ``filter_outcome_gate``: the gate opens only after this many consecutive
        rollouts with outcome variation, the current one included. 2 (default): the rollout of a first success is
        never filtered (a single drop there stalled an Acrobot panel seed for good); 1: every rollout whose recent
        episodes differ may be filtered.
    :param influence_folds: ``"adaptive"`` and ``"reliability"`` modes: number of contiguous folds of the buffer for
        cross-fitting (at least 3).
    :param filter_whole_minibatches: Round the number of kept records to whole minibatches
        (:func:`~sb3_influence.filtering.round_to_minibatches`), so that no epoch ends on a step over a few records.
    :param influence_objective: What influence is measured against. ``None`` (default): the return objective
        (:class:`~sb3_influence.ReturnObjective`), centred (``center=True``, the buffer's mean advantage
        subtracted) in ``"reliability"`` mode and uncentred in the others, the paper's fixed-p modes included
        (:attr:`~sb3_influence.iif.InfluenceFilterMixin.objective`).
    :param influence_chunk_size: The most records per forward pass when scoring (bounds the memory of scoring).
    :param influence_preconditioner: ``"none"`` (TracIn for SGD, the paper's) or ``"adam"`` (measure influence
        along Adam's preconditioned direction; needs an Adam/AdamW optimizer).
    :param influence_loss: The per-record loss whose gradient is scored: ``"ppo"`` (PPO's own: policy, entropy and
        value terms) or ``"policy"`` (the policy term alone, as the paper's code; differs only where the value
        function or the entropy shares parameters with the policy, such as a shared CNN).
    :param influence_advantage_norm: How the scores' per-record loss standardises advantages (with
        ``normalize_advantage``): ``"buffer"`` (over the whole buffer) or ``"minibatch"`` (within the ``batch_size``
        minibatches of one random permutation of the buffer, as PPO's update does and as the paper's code scores;
        the permutation is drawn from ``seed`` and the iteration, see
        :func:`~sb3_influence.scoring.minibatch_groups`).
    :param influence_ranking: ``"reliability"`` mode: which scores rank the records its rule drops: ``"plain"`` (the
        plain TracIn scores, the paper's, as reported in ``last_influence.scores``) or ``"crossfit"`` (each record
        scored along the other folds' objective gradient, without its influence on itself). The share dropped comes
        from the cross-fitted reliability either way. ``None`` (default): ``"plain"``, and ``"crossfit"`` in
        ``"adaptive"`` mode (the only ranking its test allows); the fixed-p modes take no ranking
        (:attr:`~sb3_influence.iif.InfluenceFilterMixin.ranking`).
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
        filter_mode: str = "reliability",
        filter_confidence: float = 0.95,
        filter_min_reliability: float | None = None,
        filter_min_fraction: float | None = None,
        filter_outcome_gate: bool = True,
        filter_gate_rollouts: int = 2,
        influence_folds: int = 3,
        filter_whole_minibatches: bool = True,
        influence_objective: InfluenceObjective | None = None,
        influence_chunk_size: int = 2048,
        influence_preconditioner: str = "none",
        influence_loss: str = "ppo",
        influence_advantage_norm: str = "buffer",
        influence_ranking: str | None = None,
        _init_setup_model: bool = True,
    ):
        self._init_influence(
            filter_fraction,
            filter_mode,
            filter_confidence,
            filter_min_reliability,
            filter_min_fraction,
            filter_outcome_gate,
            influence_folds,
            filter_whole_minibatches,
            influence_objective,
            influence_chunk_size,
            influence_preconditioner,
            influence_loss,
            influence_advantage_norm,
            influence_ranking,
            filter_gate_rollouts=filter_gate_rollouts,
        )
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
