"""InfluenceA2C: A2C with Iterative Influence-based Filtering (IIF)."""

from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_influence.buffers import FilteredDictRolloutBuffer, FilteredRolloutBuffer
from sb3_influence.iif import InfluenceFilterMixin
from sb3_influence.objectives import InfluenceObjective

SelfInfluenceA2C = TypeVar("SelfInfluenceA2C", bound="InfluenceA2C")


class InfluenceA2C(InfluenceFilterMixin, A2C):
    """
    A2C with Iterative Influence-based Filtering: every rollout is scored at ``theta_k``, the harmful records are
    dropped, and A2C's single update runs on the kept records (one batch, as in A2C).

    A2C's per-record loss has the same derivative at ``theta_k`` as PPO's (``-A log pi`` and ``-A ratio`` agree
    there), so the scores are those of :class:`~sb3_influence.InfluencePPO` with A2C's ``ent_coef``, ``vf_coef``
    and ``normalize_advantage`` (off by default in A2C). There are no minibatches, so
    ``filter_whole_minibatches`` has no effect; at least 2 records are kept. A2C's default optimizer is RMSprop,
    so ``influence_preconditioner="adam"`` needs ``use_rms_prop=False`` (Adam). With filtering off
    (``filter_fraction=0``) training is bit-identical to :class:`~stable_baselines3.A2C` under the same seed.

    The A2C parameters are documented in :class:`~stable_baselines3.A2C`; they all behave as there.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy or an ``ActorCriticPolicy`` subclass)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, a constant or a schedule of the progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param rms_prop_eps: RMSProp epsilon
    :param use_rms_prop: Whether to use RMSprop (default) or Adam as optimizer
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
    :param rollout_buffer_class: Rollout buffer class; ``None``, ``RolloutBuffer`` and ``DictRolloutBuffer`` select
        the filtering variants; a custom class must subclass :class:`~sb3_influence.buffers.FilterMixin`
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize the advantage (also used in the per-record loss)
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param filter_fraction: As in :class:`~sb3_influence.InfluencePPO`.
    :param filter_mode: As in :class:`~sb3_influence.InfluencePPO` (default ``"adaptive"``).
    :param filter_confidence: As in :class:`~sb3_influence.InfluencePPO`.
    :param filter_min_reliability: As in :class:`~sb3_influence.InfluencePPO`.
    :param filter_min_fraction: As in :class:`~sb3_influence.InfluencePPO`.
    :param filter_outcome_gate: As in :class:`~sb3_influence.InfluencePPO`.
    :param filter_gate_rollouts: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_folds: As in :class:`~sb3_influence.InfluencePPO` (at most ``n_steps``).
    :param filter_whole_minibatches: No effect (A2C updates on one batch); kept for a common signature.
    :param influence_objective: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_chunk_size: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_preconditioner: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_loss: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_ranking: As in :class:`~sb3_influence.InfluencePPO`.
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
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        filter_fraction: float | None = None,
        filter_mode: str = "adaptive",
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
            "buffer",  # influence_advantage_norm: no record minibatches to standardise within
            influence_ranking,
            filter_gate_rollouts=filter_gate_rollouts,
        )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            rms_prop_eps=rms_prop_eps,
            use_rms_prop=use_rms_prop,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def _minibatch_size(self) -> int | None:
        return None  # A2C's train() takes the whole (kept) buffer as one batch

    def learn(
        self: SelfInfluenceA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "InfluenceA2C",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfInfluenceA2C:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
