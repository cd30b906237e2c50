"""InfluenceMaskablePPO: sb3-contrib's MaskablePPO with Iterative Influence-based Filtering (IIF)."""

from typing import Any, ClassVar, TypeVar

import torch as th
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.ppo_mask.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_influence.buffers import FilteredMaskableDictRolloutBuffer, FilteredMaskableRolloutBuffer
from sb3_influence.iif import InfluenceFilterMixin
from sb3_influence.objectives import InfluenceObjective

SelfInfluenceMaskablePPO = TypeVar("SelfInfluenceMaskablePPO", bound="InfluenceMaskablePPO")


class InfluenceMaskablePPO(InfluenceFilterMixin, MaskablePPO):
    """
    MaskablePPO (PPO with invalid action masking, sb3-contrib) with Iterative Influence-based Filtering.

    Records are scored on the masked action distributions, with the masks stored in the rollout buffer, exactly
    as ``MaskablePPO.train()`` evaluates them (``evaluate_actions(obs, actions, action_masks=...)``); the kept
    records are yielded with their masks. With ``filter_fraction=0`` training is bit-identical to
    :class:`~sb3_contrib.MaskablePPO` under the same seed.

    The MaskablePPO parameters are documented in :class:`~sb3_contrib.MaskablePPO`; they all behave as there.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy or a ``MaskableActorCriticPolicy``)
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
    :param rollout_buffer_class: Rollout buffer class; ``None`` and sb3-contrib's maskable buffers select the
        filtering variants; a custom class must subclass :class:`~sb3_influence.buffers.FilterMixin`
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param target_kl: Limit the KL divergence between updates
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
    :param influence_folds: As in :class:`~sb3_influence.InfluencePPO`.
    :param filter_whole_minibatches: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_objective: As in :class:`~sb3_influence.InfluencePPO`; an
        :class:`~sb3_influence.ActionObjective` takes the masks of its states (``action_masks``).
    :param influence_chunk_size: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_preconditioner: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_loss: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_advantage_norm: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_ranking: As in :class:`~sb3_influence.InfluencePPO`.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    rollout_buffer: FilteredMaskableRolloutBuffer | FilteredMaskableDictRolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[MaskableActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int | None = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
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

    def _default_buffer_classes(self) -> tuple[type, type]:
        return MaskableRolloutBuffer, MaskableDictRolloutBuffer

    def _check_influence_policy(self) -> None:
        pass  # MaskablePPO's _setup_model already requires a MaskableActorCriticPolicy

    def learn(  # type: ignore[override]
        self: SelfInfluenceMaskablePPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "InfluenceMaskablePPO",
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfInfluenceMaskablePPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            use_masking=use_masking,
            progress_bar=progress_bar,
        )
