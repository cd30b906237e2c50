"""The slow, obvious reference: explicit per-record gradients with autograd. Tests only."""

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO


def _record(buffer, step: int, env: int, policy):
    if isinstance(buffer.observations, dict):
        obs = {k: th.as_tensor(v[step, env][None], device=policy.device) for k, v in buffer.observations.items()}
    else:
        obs = th.as_tensor(buffer.observations[step, env][None], device=policy.device)
    action = th.as_tensor(buffer.actions[step, env][None].astype(np.float32), device=policy.device)
    if isinstance(policy.action_space, spaces.Discrete):
        action = action.long().flatten()
    return obs, action


def _evaluate(policy, buffer, step: int, env: int):
    """``evaluate_actions`` on one record, as the algorithm's ``train()`` sees it (masks; LSTM sequence)."""
    if hasattr(buffer, "hidden_states_pi"):  # recurrent: the env's sequence from its first step up to this record
        from sb3_contrib.common.recurrent.type_aliases import RNNStates

        steps = range(step + 1)
        parts = [_record(buffer, t, env, policy)[0] for t in steps]
        obs = {k: th.cat([o[k] for o in parts]) for k in parts[0]} if isinstance(parts[0], dict) else th.cat(parts)
        action = th.cat([_record(buffer, t, env, policy)[1] for t in steps])
        states = [
            th.as_tensor(getattr(buffer, name)[0][:, env : env + 1], device=policy.device).contiguous()
            for name in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
        ]
        starts = th.as_tensor(buffer.episode_starts[: step + 1, env], dtype=th.float32, device=policy.device)
        values, log_prob, entropy = policy.evaluate_actions(
            obs, action, RNNStates((states[0], states[1]), (states[2], states[3])), starts
        )
        return values[-1:], log_prob[-1:], None if entropy is None else entropy[-1:]
    obs, action = _record(buffer, step, env, policy)
    if hasattr(buffer, "action_masks"):
        return policy.evaluate_actions(obs, action, action_masks=buffer.action_masks[step, env][None])
    return policy.evaluate_actions(obs, action)


def finite_records(buffer) -> np.ndarray:
    """``(n_steps, n_envs)``: the records whose reward, advantage and return are all finite."""
    return np.isfinite(buffer.rewards) & np.isfinite(buffer.advantages) & np.isfinite(buffer.returns)


def return_objective_fn(model: PPO, mask: np.ndarray, center: bool = False):
    """
    ``policy -> (1/n) sum over the masked records of A_i log pi(a_i|s_i)``, record by record (``center``: with
    ``A_i - mean(A)``, the mean over the buffer's records with finite data).
    """
    buffer = model.rollout_buffer
    n_steps, n_envs = buffer.buffer_size, buffer.n_envs
    finite = finite_records(buffer)
    baseline = float(np.mean(buffer.advantages[finite])) if center and finite.any() else 0.0

    def f(policy):
        total = 0.0
        for step in range(n_steps):
            for env in range(n_envs):
                if mask[step, env]:
                    _, log_prob, _ = _evaluate(policy, buffer, step, env)
                    total = total + (float(buffer.advantages[step, env]) - baseline) * log_prob.sum() / (n_steps * n_envs)
        return total

    return f


def model_centers(model) -> bool:
    """Whether the model's objective in use (``model.objective`` of an IIF model) centres the advantages."""
    return bool(getattr(getattr(model, "objective", None), "center", False))


def oracle_scores(
    model: PPO, objective_fn=None, direction_fn=None, include=None, policy_only=False, advantage_groups=None
) -> np.ndarray:
    """
    I_i = <grad f, -grad l_i> with l_i PPO's per-record loss (ratio form, clipping inactive at theta_k).

    Works for PPO and A2C (same derivative at theta_k), MaskablePPO (masked distributions) and RecurrentPPO (each
    record evaluated in its env's sequence from the buffer's first step, LSTM reset at episode starts).

    Must be called on an unflattened, full buffer (e.g. from ``_on_rollout_end``).

    :param objective_fn: ``policy -> f(theta)`` (default: the return objective over the buffer, centred where the
        model's objective in use is, see :func:`model_centers`).
    :param direction_fn: optional map applied to grad f (e.g. Adam's preconditioner).
    :param include: optional boolean ``(n_steps, n_envs)``: only these records enter the return objective and the
        advantage standardisation, and only they are scored (NaN elsewhere). Default: the records with finite data.
    :param policy_only: score the policy term of the loss alone (no entropy or value term).
    :param advantage_groups: optional group id per record ``(n_steps, n_envs)``: advantages are standardised
        within each group (over its included records) instead of over the buffer.
    """
    policy, buffer = model.policy, model.rollout_buffer
    assert not buffer.generator_ready
    was_training = policy.training
    policy.set_training_mode(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    n_steps, n_envs = buffer.buffer_size, buffer.n_envs
    if include is None:
        include = finite_records(buffer)
    raw_adv = th.as_tensor(np.where(include, buffer.advantages, 0.0), device=policy.device)
    f = (objective_fn or return_objective_fn(model, include, model_centers(model)))(policy)
    g = [
        gr if gr is not None else th.zeros_like(p)
        for gr, p in zip(th.autograd.grad(f, params, allow_unused=True), params, strict=True)
    ]
    if direction_fn is not None:
        g = direction_fn(params, g)
    adv = raw_adv.clone()
    if model.normalize_advantage:
        groups = np.zeros((n_steps, n_envs), dtype=int) if advantage_groups is None else advantage_groups
        for group in np.unique(groups[include]):
            members = th.as_tensor(include & (groups == group))
            kept = raw_adv[members]
            adv[members] = (kept - kept.mean()) / (kept.std() + 1e-8) if kept.numel() > 1 else kept
    scores = np.full((n_steps, n_envs), np.nan)
    for step in range(n_steps):
        for env in range(n_envs):
            if not include[step, env]:
                continue
            values, log_prob, entropy = _evaluate(policy, buffer, step, env)
            ratio = th.exp(log_prob - th.as_tensor(buffer.log_probs[step, env], device=policy.device))
            entropy = -log_prob if entropy is None else entropy
            ret = th.as_tensor(buffer.returns[step, env], device=policy.device)
            ent_coef, vf_coef = (0.0, 0.0) if policy_only else (model.ent_coef, model.vf_coef)
            loss = (-adv[step, env] * ratio - ent_coef * entropy + vf_coef * (values.flatten() - ret) ** 2).sum()
            grads = th.autograd.grad(loss, params, allow_unused=True)
            scores[step, env] = -sum(float((gi * gr).sum()) for gi, gr in zip(g, grads, strict=True) if gr is not None)
    policy.set_training_mode(was_training)
    return scores
