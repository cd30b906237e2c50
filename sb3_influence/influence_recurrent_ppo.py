"""InfluenceRecurrentPPO: sb3-contrib's RecurrentPPO (LSTM policies) with Iterative Influence-based Filtering (IIF)."""

from typing import Any, ClassVar, TypeVar

import torch as th
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.ppo_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_influence.buffers import FILTERED_BUFFERS, FilteredRecurrentDictRolloutBuffer, FilteredRecurrentRolloutBuffer
from sb3_influence.iif import InfluenceFilterMixin
from sb3_influence.objectives import ActionObjective, InfluenceObjective

SelfInfluenceRecurrentPPO = TypeVar("SelfInfluenceRecurrentPPO", bound="InfluenceRecurrentPPO")


class InfluenceRecurrentPPO(InfluenceFilterMixin, RecurrentPPO):
    """
    RecurrentPPO (PPO with LSTM policies, sb3-contrib) with Iterative Influence-based Filtering.

    **Scores.** A record's loss depends on the LSTM state carried through its sequence, so records are scored by
    whole sequences (:func:`~sb3_influence.records.evaluate_records`): each environment's rollout runs from the LSTM
    states stored at its first step, with the state reset at episode starts, and every record's derivative flows
    back through the states of its episode within the rollout. This is how ``RecurrentPPO.train()`` evaluates a
    minibatch holding the whole buffer; its random minibatch cuts (which start a sequence from a stored state and so
    truncate back-propagation there) are drawn after the scores, so the scores cannot follow them. Forward-mode AD
    runs through PyTorch's composite LSTM kernels (the oneDNN and cuDNN kernels have no forward-mode AD).

    **Update.** Sequences stay whole: dropped records are masked inside their sequence (the keep mask is folded into
    the samples' ``mask``, which ``RecurrentPPO.train()`` applies to every loss term and to the advantage
    normalisation), so they still carry the LSTM but enter no loss. Minibatches with fewer than 2 kept records are
    skipped; ``filter_whole_minibatches`` has no effect (the number of gradient steps does not change).
    With ``filter_fraction=0`` training is bit-identical to :class:`~sb3_contrib.RecurrentPPO` under the same seed.

    The RecurrentPPO parameters are documented in :class:`~sb3_contrib.RecurrentPPO`; they all behave as there.

    :param policy: The policy model to use (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy or a
        ``RecurrentActorCriticPolicy``)
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
    :param influence_folds: As in :class:`~sb3_influence.InfluencePPO` (folds are blocks of steps, at most ``n_steps``).
    :param filter_whole_minibatches: No effect (minibatches are masked sequences); kept for a common signature.
    :param influence_objective: As in :class:`~sb3_influence.InfluencePPO` (an
        :class:`~sb3_influence.ActionObjective` is not supported with LSTM policies: its states have no sequence).
    :param influence_chunk_size: As in :class:`~sb3_influence.InfluencePPO` (rounded to whole environments).
    :param influence_preconditioner: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_loss: As in :class:`~sb3_influence.InfluencePPO`.
    :param influence_ranking: As in :class:`~sb3_influence.InfluencePPO`.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
    rollout_buffer: FilteredRecurrentRolloutBuffer | FilteredRecurrentDictRolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 128,
        batch_size: int | None = 128,
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
        super()._check_influence_args()
        if isinstance(self.influence_objective, ActionObjective):
            raise ValueError("InfluenceRecurrentPPO does not support an ActionObjective: its states have no LSTM sequence")

    def _default_buffer_classes(self) -> tuple[type, type]:
        return RecurrentRolloutBuffer, RecurrentDictRolloutBuffer

    def _rounds_to_minibatches(self) -> bool:
        return False  # minibatches are sequences with the dropped records masked: their number does not change

    def _check_influence_policy(self) -> None:
        pass  # RecurrentPPO's _setup_model already requires a RecurrentActorCriticPolicy

    def _replace_rollout_buffer(self) -> None:
        # RecurrentPPO builds its buffer itself (it has no rollout_buffer_class): build the filtering variant alike.
        old = self.rollout_buffer
        self.rollout_buffer = FILTERED_BUFFERS[type(old)](
            old.buffer_size,
            old.observation_space,
            old.action_space,
            old.hidden_state_shape,
            old.device,
            gae_lambda=old.gae_lambda,
            gamma=old.gamma,
            n_envs=old.n_envs,
        )

    def learn(
        self: SelfInfluenceRecurrentPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "InfluenceRecurrentPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfInfluenceRecurrentPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
