"""Every IIF algorithm against its parent: oracle scores, bit-identity without filtering, filtering, save/load."""

import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)

from sb3_influence import (
    InfluenceA2C,
    InfluenceDiagnosticsCallback,
    InfluenceMaskablePPO,
    InfluencePPO,
    InfluenceRecurrentPPO,
    RolloutRecords,
)
from sb3_influence.buffers import FilteredRecurrentRolloutBuffer
from sb3_influence.iif import SupportsInfluence
from sb3_influence.scoring import fold_ids, model_crossfit_scores
from tests.oracle import model_centers, oracle_scores, return_objective_fn
from tests.test_scoring import CaptureAtRolloutEnd, _assert_close

N_STEPS, N_ENVS = 16, 2
LSTM = dict(lstm_hidden_size=8, net_arch=[16])

SPACES = {
    "discrete": lambda: IdentityEnv(4, ep_length=6),
    "box": lambda: IdentityEnvBox(ep_length=6),
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(3, ep_length=6),
    "multibinary": lambda: IdentityEnvMultiBinary(3, ep_length=6),
}
MASKED = {
    "discrete": lambda: InvalidActionEnvDiscrete(dim=6, ep_length=6, n_invalid_actions=3),
    "multidiscrete": lambda: InvalidActionEnvMultiDiscrete(dims=[3, 4], ep_length=6, n_invalid_actions=3),
    "multibinary": lambda: InvalidActionEnvMultiBinary(dims=4, ep_length=6, n_invalid_actions=2),
}
#: (IIF class, parent, policy, extra kwargs)
PPO_KW = dict(batch_size=8, n_epochs=2)
ALGOS = {
    "a2c": (InfluenceA2C, A2C, "MlpPolicy", dict(normalize_advantage=True, policy_kwargs=dict(net_arch=[16]))),
    "maskable_ppo": (InfluenceMaskablePPO, MaskablePPO, "MlpPolicy", dict(**PPO_KW, policy_kwargs=dict(net_arch=[16]))),
    "recurrent_ppo": (InfluenceRecurrentPPO, RecurrentPPO, "MlpLstmPolicy", dict(**PPO_KW, policy_kwargs=LSTM)),
}


def _env(algo: str, space: str = "discrete", n_envs: int = N_ENVS):
    env_fn = MASKED[space] if algo == "maskable_ppo" else SPACES[space]
    return make_vec_env(env_fn, n_envs=n_envs, seed=0)


def _make(algo: str, space: str = "discrete", parent: bool = False, n_envs: int = N_ENVS, **kwargs):
    iif, base, policy, extra = ALGOS[algo]
    kwargs = {**extra, "ent_coef": 0.01, "n_steps": N_STEPS, "seed": 0, **kwargs}
    return (base if parent else iif)(policy, _env(algo, space, n_envs), **kwargs)


def _at_rollout_end(model, fn, rollout: int = 2):
    callback = CaptureAtRolloutEnd(fn, rollout)
    model.learn(N_STEPS * model.n_envs * rollout, callback=callback)
    assert callback.result is not None
    return callback.result


CASES = [("a2c", s) for s in sorted(SPACES)] + [("maskable_ppo", s) for s in sorted(MASKED)]
# Plain RecurrentPPO (sb3-contrib 2.9) fails on these two envs: its LSTM rejects the numpy input size of a
# MultiDiscrete observation space, and its train() fails on the int8 padded MultiBinary actions.
CASES += [("recurrent_ppo", s) for s in ("box", "discrete")]


@pytest.mark.parametrize(("algo", "space"), CASES)
def test_scores_match_per_record_oracle(algo, space):
    fast, slow = _at_rollout_end(_make(algo, space), lambda m: (m.compute_influence(), oracle_scores(m)))
    _assert_close(fast, slow)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_policy_term_scores_match_oracle(algo):
    model = _make(algo, influence_loss="policy", vf_coef=5.0)
    assert model.influence_loss == "policy"
    fast, slow = _at_rollout_end(model, lambda m: (m.compute_influence(), oracle_scores(m, policy_only=True)))
    _assert_close(fast, slow)


def test_maskable_minibatch_advantage_norm_matches_oracle():
    # cross-fitted fold scores with advantages standardised within the minibatches of one permutation
    def fn(m):
        groups = m._influence_advantage_groups(m.n_steps * m.n_envs).reshape(m.n_steps, m.n_envs)
        folds = fold_ids(m.n_steps, m.n_envs, 3)
        oracles = [
            oracle_scores(m, return_objective_fn(m, folds == j, model_centers(m)), advantage_groups=groups) for j in range(3)
        ]
        return model_crossfit_scores(m, n_folds=3), oracles

    crossfit, oracles = _at_rollout_end(_make("maskable_ppo", influence_advantage_norm="minibatch"), fn)
    for fast, slow in zip(crossfit.by_fold, oracles, strict=True):
        _assert_close(fast, slow)


@pytest.mark.parametrize("algo", ["maskable_ppo", "recurrent_ppo"])
def test_crossfit_fold_scores_match_oracle(algo):
    def fn(m):
        folds = fold_ids(m.n_steps, m.n_envs, 3)
        oracles = [oracle_scores(m, return_objective_fn(m, folds == j, model_centers(m))) for j in range(3)]
        return model_crossfit_scores(m, n_folds=3), oracles

    crossfit, oracles = _at_rollout_end(_make(algo), fn)
    for fast, slow in zip(crossfit.by_fold, oracles, strict=True):
        _assert_close(fast, slow)


def test_recurrent_scores_see_through_the_lstm():
    """Influence through the LSTM's weights alone matches the oracle (a stale ``_flat_weights`` would give 0)."""

    def fn(m):
        lstm = {id(p) for p in m.policy.lstm_actor.parameters()}
        for p in m.policy.parameters():
            p.requires_grad_(id(p) in lstm)
        try:
            return m.compute_influence(), oracle_scores(m)
        finally:
            for p in m.policy.parameters():
                p.requires_grad_(True)

    fast, slow = _at_rollout_end(_make("recurrent_ppo", n_envs=1), fn)
    _assert_close(fast, slow)  # also asserts that the oracle's scores are not all zero


def test_recurrent_dict_policy_matches_oracle():
    model = InfluenceRecurrentPPO(
        "MultiInputLstmPolicy",
        make_vec_env(SimpleMultiObsEnv, n_envs=N_ENVS, seed=0),
        n_steps=N_STEPS,
        batch_size=8,
        n_epochs=1,
        ent_coef=0.01,
        seed=0,
        policy_kwargs=LSTM,
    )
    fast, slow = _at_rollout_end(model, lambda m: (m.compute_influence(), oracle_scores(m)))
    _assert_close(fast, slow)


def test_recurrent_records_reproduce_the_rollout():
    """Evaluated by whole sequences at theta_k, the records give back the stored values and log-probabilities."""

    def fn(m):
        records = RolloutRecords.from_buffer(m.rollout_buffer)
        from sb3_influence.records import evaluate_records

        with th.no_grad():
            out = [evaluate_records(m.policy, records, index) for index in records.chunks(2 * N_STEPS)]
            index = np.concatenate(list(records.chunks(2 * N_STEPS)))
        values = np.empty(records.n)
        log_probs = np.empty(records.n)
        values[index] = th.cat([o[0] for o in out]).numpy()
        log_probs[index] = th.cat([o[1] for o in out]).numpy()
        return records, values, log_probs

    records, values, log_probs = _at_rollout_end(_make("recurrent_ppo", n_envs=3), fn)
    np.testing.assert_allclose(values, records.values, atol=1e-5)
    np.testing.assert_allclose(log_probs, records.log_probs, atol=1e-5)


def _params(model):
    return [t.clone() for t in model.policy.state_dict().values()]


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_no_filtering_is_bit_identical_to_parent(algo):
    parent = _make(algo, parent=True).learn(3 * N_STEPS * N_ENVS)
    child = _make(algo, filter_fraction=0.0).learn(3 * N_STEPS * N_ENVS)
    for a, b in zip(_params(parent), _params(child), strict=True):
        assert th.equal(a, b)
    assert child.last_influence is not None and child.last_influence.n_dropped == 0


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_filtering_drops_records_and_changes_training(algo):
    parent = _make(algo, parent=True).learn(3 * N_STEPS * N_ENVS)
    child = _make(algo, filter_mode="all", filter_fraction=0.5).learn(3 * N_STEPS * N_ENVS)
    report = child.last_influence
    assert report is not None and report.n_dropped > 0 and report.update_seconds is not None
    assert any(not th.equal(a, b) for a, b in zip(_params(parent), _params(child), strict=True))
    assert all(th.isfinite(t).all() for t in _params(child))


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_adaptive_default_trains(algo):
    model = _make(algo).learn(2 * N_STEPS * N_ENVS)
    assert model.filter_mode == "adaptive" and np.isfinite(model.last_influence.reliability)


def test_maskable_buffer_yields_kept_records_with_their_masks():
    def fn(m):
        keep = np.zeros((N_STEPS, N_ENVS), dtype=bool)
        keep[::3] = True
        buffer = m.rollout_buffer
        masks = buffer.action_masks.copy()
        buffer.set_keep_mask(keep)
        batches = list(buffer.get(batch_size=4))
        buffer.set_keep_mask(None)
        return keep, masks, batches

    keep, masks, batches = _at_rollout_end(_make("maskable_ppo"), fn, rollout=1)
    got = np.concatenate([b.action_masks.numpy() for b in batches])
    assert got.shape[0] == keep.sum()
    expected = {tuple(row) for row in masks[keep]}
    assert {tuple(row) for row in got} <= expected


def test_recurrent_buffer_masks_dropped_records_inside_sequences():
    def fn(m):
        keep = np.ones((N_STEPS, N_ENVS), dtype=bool)
        keep[3:7, 0] = False
        buffer = m.rollout_buffer
        assert isinstance(buffer, FilteredRecurrentRolloutBuffer)
        buffer.set_keep_mask(keep)
        np.random.seed(1)
        masked = list(buffer.get(batch_size=N_STEPS * N_ENVS))
        buffer.set_keep_mask(None)
        np.random.seed(1)
        plain = list(buffer.get(batch_size=N_STEPS * N_ENVS))
        return keep, masked, plain

    keep, masked, plain = _at_rollout_end(_make("recurrent_ppo"), fn, rollout=1)
    (a,), (b,) = masked, plain
    th.testing.assert_close(a.observations, b.observations)  # same sequences, same padding
    assert int(b.mask.sum()) == keep.size and int(a.mask.sum()) == keep.sum()
    assert th.all(a.mask <= b.mask)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_save_load_both_ways_with_parent(algo, tmp_path):
    iif, base, _, _ = ALGOS[algo]
    child = _make(algo, filter_mode="all", filter_fraction=0.25).learn(N_STEPS * N_ENVS)
    child.save(tmp_path / "child.zip")
    as_parent = base.load(tmp_path / "child.zip", env=_env(algo))
    as_parent.learn(N_STEPS * N_ENVS)
    parent = _make(algo, parent=True).learn(N_STEPS * N_ENVS)
    parent.save(tmp_path / "parent.zip")
    as_child = iif.load(tmp_path / "parent.zip", env=_env(algo))
    for a, b in zip(_params(parent), _params(as_child), strict=True):
        assert th.equal(a, b)
    as_child.learn(N_STEPS * N_ENVS, reset_num_timesteps=False)
    assert as_child.last_influence is not None
    reloaded = iif.load(tmp_path / "child.zip", env=_env(algo))
    assert (reloaded.filter_mode, reloaded.filter_fraction) == ("all", 0.25)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_diagnostics_callback_works(algo):
    model = _make(algo, filter_mode="negative", filter_fraction=0.5)
    assert isinstance(model, SupportsInfluence)
    callback = InfluenceDiagnosticsCallback(top_k=2, strict=True)
    model.learn(2 * N_STEPS * N_ENVS, callback=callback)
    assert model.last_influence is not None


def test_plain_ppo_is_not_an_iif_model():
    assert not isinstance(PPO("MlpPolicy", "CartPole-v1", n_steps=16), SupportsInfluence)
    assert isinstance(InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16), SupportsInfluence)


def test_recurrent_rejects_an_action_objective():
    from sb3_influence import ActionObjective

    with pytest.raises(ValueError, match="ActionObjective"):
        InfluenceRecurrentPPO(
            "MlpLstmPolicy",
            "CartPole-v1",
            influence_objective=ActionObjective(np.zeros((1, 4), np.float32), [0]),
            filter_mode="negative",
        )


def test_a2c_adam_preconditioner_needs_adam():
    with pytest.raises(ValueError, match="Adam"):
        InfluenceA2C("MlpPolicy", "CartPole-v1", influence_preconditioner="adam")
    InfluenceA2C("MlpPolicy", "CartPole-v1", influence_preconditioner="adam", use_rms_prop=False)


def test_maskable_batch_size_none_is_one_batch():
    model = _make("maskable_ppo", batch_size=None, filter_mode="all", filter_fraction=0.25)
    model.learn(2 * N_STEPS * N_ENVS)
    assert model.last_influence.n_dropped == 8  # a quarter of 32 records, no minibatch rounding


def test_adaptive_rule_abstains_when_the_buffer_is_too_short_to_cross_fit():
    parent = PPO("MlpPolicy", "CartPole-v1", n_steps=2, batch_size=2, n_epochs=1, seed=0).learn(8)
    with pytest.warns(UserWarning, match="too short to cross-fit"):
        model = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=2, batch_size=2, n_epochs=1, seed=0).learn(8)
    assert model.last_influence.n_dropped == 0
    for a, b in zip(_params(parent), _params(model), strict=True):
        assert th.equal(a, b)
