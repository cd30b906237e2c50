"""
How influence is computed: one objective gradient, then one forward-mode JVP over the buffer.

For record ``i`` with PPO loss ``l_i`` (METHOD.md section 1) the TracIn score at ``theta_k`` is
``I_i = <g, -grad l_i>`` with ``g = grad f(theta_k)``. That is minus the directional derivative of ``l_i``
along ``g``, so a single forward-mode pass with tangent ``g`` gives every record's score. At ``theta_k``
the PPO ratio is 1 and no clipping is active, so

``I_i = A~_i * D log pi_i + c_ent * D H_i - 2 c_vf (V_i - R_i) * D V_i``

where ``D`` is the derivative along ``g``. Per-record gradients are never materialised.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th
import torch.autograd.forward_ad as fwAD
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from sb3_influence.objectives import InfluenceObjective, ReturnObjective
from sb3_influence.records import RolloutRecords, evaluate_records

PRECONDITIONERS = ("none", "adam")


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
    aliasing is preserved; ``torch.func.functional_call`` is avoided on purpose (METHOD.md section 6).
    Must be used inside ``forward_ad.dual_level()``. The original parameters are always restored.

    :param module: The module (policy).
    :param tangents: Tangent per parameter; parameters not in it are left as they are.
    """
    duals = {id(p): fwAD.make_dual(p.detach(), t) for p, t in tangents.items()}
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    try:
        for mod in module.modules():
            for name, param in list(mod._parameters.items()):
                if param is not None and id(param) in duals:
                    swapped.append((mod, name, param))
                    mod._parameters[name] = duals[id(param)]  # type: ignore[assignment]
        yield
    finally:
        for mod, name, param in reversed(swapped):
            mod._parameters[name] = param


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
) -> np.ndarray:
    """
    TracIn influence ``I_i = <grad f(theta), -grad l_i(theta)>`` of every record on ``f`` at the current parameters.

    Costs one backward pass over the objective and one forward-mode pass over the buffer. Scores are
    computed in eval mode (no dropout, no batch-norm statistics update), use no random numbers and
    leave the buffer, the parameters and their ``.grad`` unchanged.

    :param policy: The actor-critic policy at ``theta_k``.
    :param records: The rollout records.
    :param objective: The objective (default :class:`~sb3_influence.ReturnObjective`).
    :param ent_coef: PPO's entropy coefficient ``c_ent``.
    :param vf_coef: PPO's value coefficient ``c_vf``.
    :param normalize_advantage: Whether the per-record loss uses standardised advantages.
    :param chunk_size: The most records per forward pass (bounds memory).
    :param optimizer: If an ``Adam``/``AdamW`` optimizer is given, measure influence along Adam's
        preconditioned direction (see :func:`adam_precondition`); otherwise plain SGD TracIn.
    :return: Scores of shape ``(n_steps, n_envs)`` (float64), the layout of ``rollout_buffer.advantages``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    objective = ReturnObjective() if objective is None else objective
    device = policy.device
    was_training = policy.training
    policy.set_training_mode(False)
    try:
        params = trainable_parameters(policy)
        grads = objective_gradient(policy, objective, records, params, chunk_size)
        if optimizer is not None:
            grads = adam_precondition(optimizer, params, grads)
        tangents = {p: g.detach() for p, g in zip(params, grads, strict=True) if g is not None}
        scores = th.zeros(records.n, dtype=th.float32, device=device)
        if not tangents:  # f does not depend on the parameters: nothing has influence
            return scores.double().cpu().numpy().reshape(records.n_steps, records.n_envs)

        adv = th.as_tensor(records.advantages, dtype=th.float32, device=device)
        adv = standardized_advantages(adv, normalize_advantage)
        returns = th.as_tensor(records.returns, dtype=th.float32, device=device)
        with th.no_grad(), fwAD.dual_level(), dual_parameters(policy, tangents):
            for index in records.chunks(chunk_size):
                values, log_prob, entropy = evaluate_records(policy, records, index)
                d_log_prob = _tangent(log_prob)
                d_entropy = -d_log_prob if entropy is None else _tangent(entropy)
                v, d_v = fwAD.unpack_dual(values).primal, _tangent(values)
                scores[index] = adv[index] * d_log_prob + ent_coef * d_entropy - 2.0 * vf_coef * (v - returns[index]) * d_v
    finally:
        policy.set_training_mode(was_training)
    return scores.double().cpu().numpy().reshape(records.n_steps, records.n_envs)


def model_influence_scores(
    model: Any,
    records: RolloutRecords | None = None,
    objective: InfluenceObjective | None = None,
    chunk_size: int = 2048,
) -> np.ndarray:
    """
    :func:`influence_scores` with a PPO model's own loss settings (``ent_coef``, ``vf_coef``,
    ``normalize_advantage``), its ``influence_chunk_size`` and, when ``influence_preconditioner="adam"``, Adam's
    preconditioner. Works for :class:`~sb3_influence.InfluencePPO` and a plain SB3 ``PPO``.

    :param model: A PPO model with an ``ActorCriticPolicy``.
    :param records: The records to score (default: the model's full rollout buffer).
    :param objective: The objective (default :class:`~sb3_influence.ReturnObjective`).
    :param chunk_size: Records per forward pass when the model has no ``influence_chunk_size``.
    :return: Scores ``(n_steps, n_envs)``.
    """
    records = RolloutRecords.from_buffer(model.rollout_buffer) if records is None else records
    adam = getattr(model, "influence_preconditioner", "none") == "adam"
    return influence_scores(
        model.policy,
        records,
        objective,
        ent_coef=float(model.ent_coef),
        vf_coef=float(model.vf_coef),
        normalize_advantage=bool(model.normalize_advantage),
        chunk_size=int(getattr(model, "influence_chunk_size", chunk_size)),
        optimizer=model.policy.optimizer if adam else None,
    )


def _tangent(x: th.Tensor) -> th.Tensor:
    tangent = fwAD.unpack_dual(x).tangent
    return th.zeros_like(fwAD.unpack_dual(x).primal) if tangent is None else tangent
