"""
How influence is computed: one objective gradient, then one forward-mode JVP over the buffer.

For record ``i`` with PPO loss ``l_i`` (docs page "How IIF works", "The per-record loss") the TracIn score at ``theta_k`` is
``I_i = <g, -grad l_i>`` with ``g = grad f(theta_k)``. That is minus the directional derivative of ``l_i``
along ``g``, so a single forward-mode pass with tangent ``g`` gives every record's score. At ``theta_k``
the PPO ratio is 1 and no clipping is active, so

``I_i = A~_i * D log pi_i + c_ent * D H_i - 2 c_vf (V_i - R_i) * D V_i``

where ``D`` is the derivative along ``g``. Per-record gradients are never materialised.
"""

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
import torch.autograd.forward_ad as fwAD
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from sb3_influence.objectives import InfluenceObjective, ReturnObjective
from sb3_influence.records import RolloutRecords, evaluate_records

PRECONDITIONERS = ("none", "adam")
#: Per-record losses a model can score (``influence_loss``): PPO's own, or its policy term alone (the paper's code).
INFLUENCE_LOSSES = ("ppo", "policy")
#: How the scores' per-record loss standardises advantages (``influence_advantage_norm``): over the whole buffer, or
#: within the minibatches of a random permutation (the paper's code: the first epoch's minibatches).
ADVANTAGE_NORMS = ("buffer", "minibatch")


def trainable_parameters(policy: nn.Module) -> list[nn.Parameter]:
    """
    Every trainable parameter of the policy, each once (shared extractors are not counted twice).

    :param policy: The policy.
    :return: Parameters with ``requires_grad``.
    """
    return [p for p in policy.parameters() if p.requires_grad]


def objective_gradient(
    policy: ActorCriticPolicy,
    objective: InfluenceObjective,
    records: RolloutRecords,
    params: list[nn.Parameter],
    chunk_size: int,
) -> list[th.Tensor | None]:
    """
    ``grad f(theta)``, accumulated over the objective's terms (bounded memory); ``.grad`` is left untouched.

    :param policy: The policy.
    :param objective: The objective ``f``.
    :param records: The rollout records.
    :param params: The parameters to differentiate.
    :param chunk_size: The most records per forward pass.
    :return: One gradient per parameter, ``None`` where ``f`` does not depend on it.
    """
    grads: list[th.Tensor | None] = [None] * len(params)
    for term in objective.terms(policy, records, chunk_size):
        if not term.requires_grad:
            continue
        for k, grad in enumerate(th.autograd.grad(term, params, allow_unused=True)):
            if grad is not None:
                grads[k] = grad if grads[k] is None else grads[k] + grad  # type: ignore[operator]
    return grads


def adam_precondition(
    optimizer: th.optim.Optimizer, params: list[nn.Parameter], grads: list[th.Tensor | None]
) -> list[th.Tensor | None]:
    """
    Multiply ``g`` by Adam's diagonal preconditioner ``1 / (sqrt(v_hat) + eps)`` (optimizer-aware TracIn).

    Parameters without Adam state yet (before the first update) keep their plain gradient.

    :param optimizer: An ``Adam``/``AdamW`` optimizer over the policy's parameters.
    :param params: The parameters.
    :param grads: The objective's gradient.
    :return: The preconditioned direction.
    """
    settings = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    out: list[th.Tensor | None] = []
    for p, g in zip(params, grads, strict=True):
        state = optimizer.state.get(p, {})
        if g is None or "exp_avg_sq" not in state or id(p) not in settings:
            out.append(g)
            continue
        group = settings[id(p)]
        step = float(state["step"])
        v_hat = state["exp_avg_sq"] / (1.0 - group["betas"][1] ** step)
        out.append(g / (v_hat.sqrt() + group["eps"]))
    return out


@contextmanager
def dual_parameters(module: nn.Module, tangents: dict[nn.Parameter, th.Tensor]) -> Iterator[None]:
    """
    Temporarily replace parameters by forward-mode dual tensors carrying the given tangents.

    The swap goes module by module (``module.modules()`` visits a shared extractor once, whatever the
    number of names it is registered under), and the same parameter always gets the same dual, so
    aliasing is preserved; ``torch.func.functional_call`` is avoided on purpose (it restores
    parameters registered under several names in the wrong order).
    Recurrent layers (``nn.LSTM``), which run on a cached list of their weights, get that list rebuilt both ways.
    Must be used inside ``forward_ad.dual_level()``. The original parameters are always restored.

    :param module: The module (policy).
    :param tangents: Tangent per parameter; parameters not in it are left as they are.
    """
    _load_jvp_decompositions()
    duals = {id(p): fwAD.make_dual(p.detach(), t) for p, t in tangents.items()}
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    try:
        for mod in module.modules():
            for name, param in list(mod._parameters.items()):
                if param is not None and id(param) in duals:
                    swapped.append((mod, name, param))
                    mod._parameters[name] = duals[id(param)]  # type: ignore[assignment]
        _refresh_flat_weights(module)
        yield
    finally:
        for mod, name, param in reversed(swapped):
            mod._parameters[name] = param
        _refresh_flat_weights(module)


@functools.cache
def _load_jvp_decompositions() -> None:
    """
    Import torch's forward-mode decompositions (what the first ``make_dual`` of a process does) without the
    ``torch.jit.script`` deprecation warning that import emits in torch 2.13: the user's first ``learn()`` must not
    warn about torch internals (SB3's own tests assert a warning-free ``learn()``). Once per process.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit\.script.*")
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.script.*")
        fwAD._maybe_load_decompositions()  # type: ignore[no-untyped-call]


def _refresh_flat_weights(module: nn.Module) -> None:
    """``nn.LSTM`` and the other RNNs run on the list ``_flat_weights``, rebuilt here from ``_parameters``."""
    for mod in module.modules():
        if isinstance(mod, nn.RNNBase):
            mod._init_flat_weights()


def standardized_advantages(advantages: th.Tensor, normalize: bool) -> th.Tensor:
    """
    ``A~``: advantages standardised over the whole buffer, ``(A - mean) / (std + 1e-8)``, as PPO does per minibatch.

    :param advantages: Raw advantages.
    :param normalize: Whether PPO normalises advantages (``normalize_advantage``).
    :return: The advantages used in the per-record loss.
    """
    if normalize and advantages.numel() > 1:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def minibatch_groups(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """
    The minibatch of each of ``n`` records in one random permutation, as SB3's ``RolloutBuffer.get`` draws an epoch:
    records ``perm[j * batch_size:(j + 1) * batch_size]`` form minibatch ``j`` (the last one may be smaller).

    :param n: Number of records (flat, in the buffer's ``(step, env)`` order).
    :param batch_size: Records per minibatch (positive).
    :param rng: The random generator of the permutation.
    :return: Integer array ``(n,)``: the minibatch of each record.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    groups = np.empty(n, dtype=np.int64)
    groups[rng.permutation(n)] = np.arange(n) // int(batch_size)
    return groups


def _standardized_finite(
    advantages: th.Tensor, finite: th.Tensor, normalize: bool, groups: np.ndarray | None = None
) -> th.Tensor:
    """
    ``A~`` over the finite records (standardised as in :func:`standardized_advantages`), within each group of
    ``groups`` (flat group ids) when given; 0 elsewhere.
    """
    out = th.zeros_like(advantages)
    if groups is None:
        out[finite] = standardized_advantages(advantages[finite], normalize)
        return out
    group_ids = th.as_tensor(np.asarray(groups).reshape(-1), device=advantages.device)
    if group_ids.shape != advantages.shape:
        raise ValueError(f"advantage_groups must hold one group per record ({advantages.numel()}), got {groups.size}")
    for group in th.unique(group_ids[finite]):
        members = finite & (group_ids == group)
        out[members] = standardized_advantages(advantages[members], normalize)
    return out


def _directional_scores(
    policy: ActorCriticPolicy,
    records: RolloutRecords,
    directions: list[list[th.Tensor | None]],
    params: list[nn.Parameter],
    *,
    ent_coef: float,
    vf_coef: float,
    normalize_advantage: bool,
    chunk_size: int,
    advantage_groups: np.ndarray | None,
) -> th.Tensor:
    """
    ``<d, -grad l_i>`` for every direction ``d`` and every finite record (NaN for the others): one JVP pass per direction.

    :return: Tensor ``(len(directions), n)``.
    """
    device = policy.device
    finite_np = records.finite
    scores = th.full((len(directions), records.n), float("nan"), dtype=th.float32, device=device)
    finite = th.as_tensor(finite_np, device=device)
    adv = _standardized_finite(
        th.as_tensor(records.advantages, dtype=th.float32, device=device), finite, normalize_advantage, advantage_groups
    )
    returns = th.as_tensor(np.where(finite_np, records.returns, 0.0), dtype=th.float32, device=device)
    for row, direction in enumerate(directions):
        tangents = {p: g.detach() for p, g in zip(params, direction, strict=True) if g is not None}
        if not tangents:  # f does not depend on the parameters: nothing has influence
            scores[row, finite] = 0.0
            continue
        with th.no_grad(), fwAD.dual_level(), dual_parameters(policy, tangents), _forward_ad_rnn(policy):
            for index in records.chunks(chunk_size, finite_only=True):
                values, log_prob, entropy = evaluate_records(policy, records, index)
                d_log_prob = _tangent(log_prob)
                d_entropy = -d_log_prob if entropy is None else _tangent(entropy)
                v, d_v = fwAD.unpack_dual(values).primal, _tangent(values)
                scores[row, index] = (
                    adv[index] * d_log_prob + ent_coef * d_entropy - 2.0 * vf_coef * (v - returns[index]) * d_v
                )
    if records.recurrent:  # whole sequences were evaluated, the non-finite records with them
        scores[:, ~finite] = float("nan")
    return scores


@contextmanager
def _forward_ad_rnn(policy: nn.Module) -> Iterator[None]:
    """
    Route recurrent layers through PyTorch's composite kernels, which support forward-mode AD (the oneDNN and cuDNN
    RNN kernels do not). A no-op for policies without recurrent layers.
    """
    if not any(isinstance(module, nn.RNNBase) for module in policy.modules()):
        yield
        return
    with th.backends.mkldnn.flags(enabled=False), th.backends.cudnn.flags(enabled=False):
        yield


def influence_scores(
    policy: ActorCriticPolicy,
    records: RolloutRecords,
    objective: InfluenceObjective | None = None,
    *,
    ent_coef: float = 0.0,
    vf_coef: float = 0.5,
    normalize_advantage: bool = True,
    chunk_size: int = 2048,
    optimizer: th.optim.Optimizer | None = None,
    advantage_groups: np.ndarray | None = None,
) -> np.ndarray:
    """
    TracIn influence ``I_i = <grad f(theta), -grad l_i(theta)>`` of every record on ``f`` at the current parameters.

    Costs one backward pass over the objective and one forward-mode pass over the buffer. Scores are
    computed in eval mode (no dropout, no batch-norm statistics update), use no random numbers and
    leave the buffer, the parameters and their ``.grad`` unchanged.

    Records whose reward, advantage or return is not finite (see :attr:`RolloutRecords.finite`) are left out:
    of the objective, of the advantage standardisation, and of the scores (their score is NaN).

    :param policy: The actor-critic policy at ``theta_k``.
    :param records: The rollout records.
    :param objective: The objective (default :class:`~sb3_influence.ReturnObjective`).
    :param ent_coef: PPO's entropy coefficient ``c_ent``.
    :param vf_coef: PPO's value coefficient ``c_vf``.
    :param normalize_advantage: Whether the per-record loss uses standardised advantages.
    :param chunk_size: The most records per forward pass (bounds memory).
    :param optimizer: If an ``Adam``/``AdamW`` optimizer is given, measure influence along Adam's
        preconditioned direction (see :func:`adam_precondition`); otherwise plain SGD TracIn.
    :param advantage_groups: Optional group of each record (``(n_steps, n_envs)`` or flat, e.g.
        :func:`minibatch_groups`): advantages are then standardised within each group instead of over the buffer.
    :return: Scores of shape ``(n_steps, n_envs)`` (float64), the layout of ``rollout_buffer.advantages``.
    """
    return _scores_along(
        policy, records, [objective], ent_coef, vf_coef, normalize_advantage, chunk_size, optimizer, advantage_groups
    )[0]


def _scores_along(
    policy: ActorCriticPolicy,
    records: RolloutRecords,
    objectives: list[InfluenceObjective | None],
    ent_coef: float,
    vf_coef: float,
    normalize_advantage: bool,
    chunk_size: int,
    optimizer: th.optim.Optimizer | None,
    advantage_groups: np.ndarray | None = None,
) -> np.ndarray:
    """Scores along the gradient of each objective: ``(len(objectives), n_steps, n_envs)`` float64."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    was_training = policy.training
    policy.set_training_mode(False)
    try:
        params = trainable_parameters(policy)
        directions = []
        for objective in objectives:
            grads = objective_gradient(
                policy, ReturnObjective() if objective is None else objective, records, params, chunk_size
            )
            directions.append(adam_precondition(optimizer, params, grads) if optimizer is not None else grads)
        scores = _directional_scores(
            policy,
            records,
            directions,
            params,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            normalize_advantage=normalize_advantage,
            chunk_size=chunk_size,
            advantage_groups=advantage_groups,
        )
    finally:
        policy.set_training_mode(was_training)
    return scores.double().cpu().numpy().reshape(len(objectives), records.n_steps, records.n_envs)


def fold_ids(n_steps: int, n_envs: int, n_folds: int) -> np.ndarray:
    """
    The cross-fitting folds: ``n_folds`` contiguous blocks of steps (the same blocks in every env).

    Contiguous blocks keep most episodes inside one fold, so that a record's fold-mates, which share its
    episode and so its errors, do not score it.

    :param n_steps: Steps per environment.
    :param n_envs: Number of environments.
    :param n_folds: Number of folds (at least 2, at most ``n_steps``).
    :return: Integer array ``(n_steps, n_envs)``: the fold of each record.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= n_steps:
        raise ValueError(f"n_folds must be an integer in [2, n_steps={n_steps}], got {n_folds!r}")
    steps = (np.arange(n_steps) * n_folds) // n_steps
    return np.repeat(steps[:, None], n_envs, axis=1)


@dataclass(frozen=True)
class CrossFitScores:
    """
    Cross-fitted influence: every record scored along the return-objective gradient of each fold of the buffer.

    ``by_fold[j, step, env] = <g_j, -grad l_i>``, with ``g_j`` the gradient of the return objective's terms over
    fold ``j`` (``f = sum_j f_j``). Their sum over ``j`` is the plain TracIn score (:attr:`total`). A record's own
    fold contains the record itself (its self-influence, favourable unless advantage standardisation flips the sign
    of its advantage) and the records of its own episode; the other folds' directions are independent of it, which
    gives an unbiased score (:attr:`scores`) and, from their disagreement, a noise level and a reliability.

    :param by_fold: Scores ``(n_folds, n_steps, n_envs)``; NaN for records with non-finite data.
    :param folds: Fold of each record, ``(n_steps, n_envs)``.
    """

    by_fold: np.ndarray
    folds: np.ndarray

    @property
    def n_folds(self) -> int:
        """Number of folds ``K``."""
        return int(self.by_fold.shape[0])

    @property
    def total(self) -> np.ndarray:
        """The plain TracIn scores ``sum_j by_fold[j]`` (equal to :func:`influence_scores`)."""
        return self.by_fold.sum(axis=0)

    def _out_of_fold(self) -> np.ndarray:
        """``(K - 1, n_steps, n_envs)``: each record's scores along the other folds' directions, in fold order."""
        k = self.n_folds
        order = np.arange(k)[:, None, None]
        other = np.sort(np.where(order == self.folds[None], k, order), axis=0)[: k - 1]  # fold ids != own fold
        return np.take_along_axis(self.by_fold, other, axis=0)

    @property
    def scores(self) -> np.ndarray:
        """Cross-fitted scores ``K/(K-1) * sum_{j != fold(i)} by_fold[j]``, on the scale of :attr:`total`."""
        k = self.n_folds
        return self._out_of_fold().sum(axis=0) * k / (k - 1)

    @property
    def noise_std(self) -> float:
        """
        Pooled standard error of :attr:`scores`: ``K * sqrt(mean_i var_j(out-of-fold scores) / (K - 1))``
        (NaN with 2 folds, where each record has one out-of-fold score).
        """
        k = self.n_folds
        oof = self._out_of_fold()
        finite = np.isfinite(oof).all(axis=0)
        if k < 3 or not finite.any():
            return float("nan")
        within = float(np.mean(np.var(oof[:, finite], axis=0, ddof=1)))
        return k * float(np.sqrt(within / (k - 1)))

    @property
    def reliability(self) -> float:
        """
        Split reliability of :attr:`scores` (Spearman-Brown-corrected intraclass correlation of the
        out-of-fold scores): near 1 when the folds agree on which records help, near 0 (or below) when
        the ranking is noise. NaN with 2 folds or fewer than 2 finite records.
        """
        k = self.n_folds
        oof = self._out_of_fold()
        finite = np.isfinite(oof).all(axis=0)
        if k < 3 or np.count_nonzero(finite) < 2:
            return float("nan")
        values = oof[:, finite]
        within = float(np.mean(np.var(values, axis=0, ddof=1)))
        between = float(np.var(values.mean(axis=0), ddof=1))
        if between <= 0.0:
            return float("nan")
        return 1.0 - within / ((k - 1) * between)


def crossfit_influence_scores(
    policy: ActorCriticPolicy,
    records: RolloutRecords,
    n_folds: int = 3,
    *,
    ent_coef: float = 0.0,
    vf_coef: float = 0.5,
    normalize_advantage: bool = True,
    chunk_size: int = 2048,
    optimizer: th.optim.Optimizer | None = None,
    advantage_groups: np.ndarray | None = None,
    center: bool = False,
) -> CrossFitScores:
    """
    Cross-fitted return-objective influence (:class:`CrossFitScores`): the return objective's gradient over each
    of ``n_folds`` contiguous blocks of the buffer (:func:`fold_ids`), and every record scored along each.

    Costs the same backward pass as :func:`influence_scores` (each record enters one fold's gradient) and
    ``n_folds`` forward-mode passes instead of one.

    :param policy: The actor-critic policy at ``theta_k``.
    :param records: The rollout records.
    :param n_folds: Number of folds ``K`` (3 or more for a noise level and a reliability).
    :param ent_coef: PPO's entropy coefficient.
    :param vf_coef: PPO's value coefficient.
    :param normalize_advantage: Whether the per-record loss uses standardised advantages.
    :param chunk_size: The most records per forward pass.
    :param optimizer: An ``Adam``/``AdamW`` optimizer for Adam-preconditioned directions, or ``None``.
    :param advantage_groups: As in :func:`influence_scores`.
    :param center: Whether the return objective centres the advantages (:class:`~sb3_influence.ReturnObjective`).
    :return: The cross-fitted scores.
    """
    folds = fold_ids(records.n_steps, records.n_envs, n_folds)
    objectives: list[InfluenceObjective | None] = [ReturnObjective(mask=folds == j, center=center) for j in range(n_folds)]
    by_fold = _scores_along(
        policy, records, objectives, ent_coef, vf_coef, normalize_advantage, chunk_size, optimizer, advantage_groups
    )
    return CrossFitScores(by_fold=by_fold, folds=folds)


def model_influence_scores(
    model: Any,
    records: RolloutRecords | None = None,
    objective: InfluenceObjective | None = None,
    chunk_size: int = 2048,
) -> np.ndarray:
    """
    :func:`influence_scores` with a PPO model's own loss settings (``ent_coef``, ``vf_coef``,
    ``normalize_advantage``; neither coefficient with ``influence_loss="policy"``), its ``influence_chunk_size``
    and, when ``influence_preconditioner="adam"``, Adam's preconditioner. Works for
    :class:`~sb3_influence.InfluencePPO` and a plain SB3 ``PPO``.

    :param model: A PPO model with an ``ActorCriticPolicy``.
    :param records: The records to score (default: the model's full rollout buffer).
    :param objective: The objective (default :class:`~sb3_influence.ReturnObjective`).
    :param chunk_size: Records per forward pass when the model has no ``influence_chunk_size``.
    :return: Scores ``(n_steps, n_envs)``.
    """
    records = RolloutRecords.from_buffer(model.rollout_buffer) if records is None else records
    return influence_scores(model.policy, records, objective, **_model_settings(model, records, chunk_size))


def _model_settings(model: Any, records: RolloutRecords, chunk_size: int = 2048) -> dict[str, Any]:
    """
    A model's per-record loss settings, chunk size and (for ``influence_preconditioner="adam"``) optimizer. With
    ``influence_loss="policy"`` the loss is the policy term alone: no entropy or value term. With
    ``influence_advantage_norm="minibatch"`` the advantages are standardised within the model's minibatch groups of
    ``records``.
    """
    adam = getattr(model, "influence_preconditioner", "none") == "adam"
    policy_only = getattr(model, "influence_loss", "ppo") == "policy"
    groups = getattr(model, "_influence_advantage_groups", None)  # influence_advantage_norm="minibatch"
    return dict(
        ent_coef=0.0 if policy_only else float(model.ent_coef),
        vf_coef=0.0 if policy_only else float(model.vf_coef),
        normalize_advantage=bool(model.normalize_advantage),
        chunk_size=int(getattr(model, "influence_chunk_size", chunk_size)),
        optimizer=model.policy.optimizer if adam else None,
        advantage_groups=groups(records.n) if groups is not None else None,
    )


def model_crossfit_scores(model: Any, records: RolloutRecords | None = None, n_folds: int = 3) -> CrossFitScores:
    """
    :func:`crossfit_influence_scores` with a PPO model's own loss settings, chunk size and preconditioner
    (as :func:`model_influence_scores`), and the ``center`` of its objective in use (an IIF model's
    :attr:`~sb3_influence.iif.InfluenceFilterMixin.objective`, else its ``influence_objective``; a
    :class:`~sb3_influence.ReturnObjective`, or ``None`` for the uncentred default).

    :param model: A PPO model with an ``ActorCriticPolicy``.
    :param records: The records to score (default: the model's full rollout buffer).
    :param n_folds: Number of folds.
    :return: The cross-fitted scores.
    """
    records = RolloutRecords.from_buffer(model.rollout_buffer) if records is None else records
    objective = getattr(model, "objective", getattr(model, "influence_objective", None))
    center = objective.center if isinstance(objective, ReturnObjective) else False
    return crossfit_influence_scores(model.policy, records, n_folds, center=center, **_model_settings(model, records))


def _tangent(x: th.Tensor) -> th.Tensor:
    tangent = fwAD.unpack_dual(x).tangent
    return th.zeros_like(fwAD.unpack_dual(x).primal) if tangent is None else tangent
