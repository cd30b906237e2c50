"""The fast path (objective gradient + forward-mode JVP) against the per-record autograd oracle."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)

from sb3_influence import ActionObjective, InfluencePPO, MiniGridCNN, ReturnObjective, RolloutRecords, influence_scores
from sb3_influence.scoring import (
    CrossFitScores,
    adam_precondition,
    crossfit_influence_scores,
    fold_ids,
    minibatch_groups,
)
from tests.oracle import oracle_scores, return_objective_fn

N_STEPS, N_ENVS = 16, 2


class CaptureAtRolloutEnd(BaseCallback):
    """Runs ``fn(model)`` at the end of the given rollout (1-based) and keeps what it returns."""

    def __init__(self, fn, rollout: int = 2):
        super().__init__()
        self.fn, self.rollout, self.count, self.result = fn, rollout, 0, None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.count += 1
        if self.count == self.rollout:
            self.result = self.fn(self.model)


def _model(env_fn, policy="MlpPolicy", n_envs=N_ENVS, **kwargs):
    env = make_vec_env(env_fn, n_envs=n_envs, seed=0)
    kwargs.setdefault("ent_coef", 0.01)
    kwargs.setdefault("policy_kwargs", dict(net_arch=[16, 16]))
    return InfluencePPO(policy, env, n_steps=N_STEPS, batch_size=8, n_epochs=2, seed=0, **kwargs)


def _both(model: InfluencePPO, rollout: int = 2, objective=None, objective_fn=None):
    def fn(m):
        return m.compute_influence(objective), oracle_scores(m, objective_fn)

    callback = CaptureAtRolloutEnd(fn, rollout)
    model.learn(N_STEPS * model.n_envs * rollout, callback=callback)
    assert callback.result is not None
    return callback.result


def _assert_close(fast: np.ndarray, slow: np.ndarray) -> None:
    assert fast.shape == slow.shape
    assert np.all(np.isfinite(fast))
    scale = np.abs(slow).max()
    assert scale > 0, "degenerate test: every oracle score is zero"
    assert np.abs(fast - slow).max() <= 1e-3 * scale, (np.abs(fast - slow).max(), scale)


SPACES = {
    "discrete": lambda: IdentityEnv(4, ep_length=8),
    "box": lambda: IdentityEnvBox(ep_length=8),
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(3, ep_length=8),
    "multibinary": lambda: IdentityEnvMultiBinary(3, ep_length=8),
}


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("normalize_advantage", [True, False])
def test_mlp_matches_oracle(space, normalize_advantage):
    fast, slow = _both(_model(SPACES[space], normalize_advantage=normalize_advantage))
    _assert_close(fast, slow)


def test_gsde_matches_oracle():
    fast, slow = _both(_model(SPACES["box"], use_sde=True))
    _assert_close(fast, slow)


@pytest.mark.parametrize("share", [True, False])
def test_shared_cnn_matches_oracle(share):
    # MiniGridCNN shared between actor and critic: the value term flows into the extractor.
    model = _model(
        lambda: FakeImageEnv(screen_height=7, screen_width=7, n_channels=3, discrete=True),
        policy="CnnPolicy",
        policy_kwargs=dict(features_extractor_class=MiniGridCNN, share_features_extractor=share, net_arch=[16]),
    )
    fast, slow = _both(model)
    _assert_close(fast, slow)


def test_policy_term_scores_match_oracle():
    # influence_loss="policy" (the paper's code): the value and entropy terms leave the per-record loss, which
    # changes the scores where they share parameters with the policy (here the CNN)
    def model(loss):
        return _model(
            lambda: FakeImageEnv(screen_height=7, screen_width=7, n_channels=3, discrete=True),
            policy="CnnPolicy",
            policy_kwargs=dict(features_extractor_class=MiniGridCNN, share_features_extractor=True, net_arch=[16]),
            vf_coef=20.0,  # a large value term, so that leaving it out shows
            influence_loss=loss,
        )

    def fn(m):
        return m.compute_influence(), oracle_scores(m, policy_only=True), oracle_scores(m)

    callback = CaptureAtRolloutEnd(fn)
    policy_model = model("policy")
    policy_model.learn(N_STEPS * N_ENVS * 2, callback=callback)
    fast, slow, full = callback.result
    _assert_close(fast, slow)
    assert np.abs(full - slow).max() > 1e-2 * np.abs(slow).max()  # the value term matters with a shared CNN
    with pytest.raises(ValueError, match="influence_loss"):
        model("value")


def test_minibatch_advantage_norm_matches_oracle():
    # influence_advantage_norm="minibatch" (the paper's code): advantages standardised within each minibatch of a
    # permutation drawn from the seed and the iteration, the same for every score of the rollout
    model = _model(lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=8), influence_advantage_norm="minibatch")

    def fn(m):
        groups = m._influence_advantage_groups(N_STEPS * N_ENVS)
        assert np.array_equal(groups, m._influence_advantage_groups(N_STEPS * N_ENVS))  # no RNG state consumed
        assert np.array_equal(np.bincount(groups), [8] * (N_STEPS * N_ENVS // 8))
        groups = groups.reshape(N_STEPS, N_ENVS)
        return m.compute_influence(), oracle_scores(m, advantage_groups=groups), oracle_scores(m)

    callback = CaptureAtRolloutEnd(fn)
    model.learn(N_STEPS * N_ENVS * 2, callback=callback)
    fast, slow, whole = callback.result
    _assert_close(fast, slow)
    assert np.abs(whole - slow).max() > 1e-3 * np.abs(slow).max()  # the grouping changes the scores
    with pytest.raises(ValueError, match="influence_advantage_norm"):
        _model(IdentityEnv, influence_advantage_norm="epoch")


def test_minibatch_groups():
    groups = minibatch_groups(10, 4, np.random.default_rng(0))
    assert sorted(np.bincount(groups)) == [2, 4, 4]
    perm = np.random.default_rng(0).permutation(10)  # the permutation's first 4 records form minibatch 0, ...
    assert np.array_equal(groups[perm], np.arange(10) // 4)
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_groups(10, 0, np.random.default_rng(0))


def test_nature_cnn_matches_oracle():
    model = _model(
        lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False),
        policy="CnnPolicy",
        n_envs=1,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[8]),
    )
    fast, slow = _both(model)
    _assert_close(fast, slow)


def test_dict_policy_matches_oracle():
    model = _model(
        lambda: SimpleMultiObsEnv(random_start=True),
        policy="MultiInputPolicy",
        policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(cnn_output_dim=8)),
    )
    fast, slow = _both(model)
    _assert_close(fast, slow)


@pytest.mark.parametrize("space", ["discrete", "box"])
def test_action_objective_matches_oracle(space):
    env = SPACES[space]()
    observations = np.stack([env.observation_space.sample() for _ in range(3)])
    actions = np.stack([env.action_space.sample() for _ in range(3)])
    objective = ActionObjective(observations, actions)

    def objective_fn(policy):
        obs, _ = policy.obs_to_tensor(observations)
        acts = th.as_tensor(actions, device=policy.device)
        acts = acts.long() if space == "discrete" else acts.float()
        return policy.evaluate_actions(obs, acts)[1].mean()

    fast, slow = _both(_model(SPACES[space]), objective=objective, objective_fn=objective_fn)
    _assert_close(fast, slow)


def test_adam_preconditioned_matches_oracle():
    model = _model(SPACES["box"], influence_preconditioner="adam")

    def fn(m):
        fast = m.compute_influence()

        def direction(params, g):
            return adam_precondition(m.policy.optimizer, params, g)

        return fast, oracle_scores(m, direction_fn=direction)

    callback = CaptureAtRolloutEnd(fn, rollout=3)
    model.learn(N_STEPS * N_ENVS * 3, callback=callback)
    fast, slow = callback.result
    _assert_close(fast, slow)
    # and it differs from plain TracIn once Adam has state


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_chunk_size_does_not_change_scores(chunk_size):
    model = _model(SPACES["discrete"])
    model.learn(N_STEPS * N_ENVS)
    records = RolloutRecords.from_buffer(model.rollout_buffer)
    ref = influence_scores(model.policy, records, ent_coef=model.ent_coef, vf_coef=model.vf_coef, chunk_size=10**6)
    got = influence_scores(model.policy, records, ent_coef=model.ent_coef, vf_coef=model.vf_coef, chunk_size=chunk_size)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_scores_after_training_use_the_flattened_buffer_consistently():
    # After train() the buffer is flattened (env-major); the records view must undo it exactly.
    model = _model(SPACES["discrete"], filter_fraction=0.0)
    callback = CaptureAtRolloutEnd(lambda m: RolloutRecords.from_buffer(m.rollout_buffer), rollout=1)
    model.learn(N_STEPS * N_ENVS, callback=callback)
    before, after = callback.result, RolloutRecords.from_buffer(model.rollout_buffer)
    assert model.rollout_buffer.generator_ready
    for name in ("observations", "actions", "advantages", "returns", "log_probs", "values"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name))


def _crossfit_and_oracles(model: InfluencePPO, n_folds: int = 3, center: bool = False):
    def fn(m):
        records = RolloutRecords.from_buffer(m.rollout_buffer)
        crossfit = crossfit_influence_scores(
            m.policy,
            records,
            n_folds,
            ent_coef=m.ent_coef,
            vf_coef=m.vf_coef,
            normalize_advantage=m.normalize_advantage,
            center=center,
        )
        folds = fold_ids(m.n_steps, m.n_envs, n_folds)
        oracles = [oracle_scores(m, return_objective_fn(m, folds == j, center)) for j in range(n_folds)]
        return crossfit, oracles, m.compute_influence(ReturnObjective(center=center))

    callback = CaptureAtRolloutEnd(fn, 2)
    model.learn(N_STEPS * model.n_envs * 2, callback=callback)
    return callback.result


@pytest.mark.parametrize("space", sorted(SPACES))
def test_crossfit_fold_scores_match_oracle(space):
    crossfit, oracles, plain = _crossfit_and_oracles(_model(SPACES[space]))
    assert crossfit.by_fold.shape == (3, N_STEPS, N_ENVS)
    for fast, slow in zip(crossfit.by_fold, oracles, strict=True):
        _assert_close(fast, slow)
    _assert_close(crossfit.total, plain)  # the folds' directions add up to the plain TracIn direction


@pytest.mark.parametrize("space", sorted(SPACES))
def test_centered_return_objective_matches_oracle(space):
    # the cross-fitted scores along the centred objective: each fold's against its own oracle, their sum against
    # the plain scores along the centred objective
    crossfit, oracles, plain = _crossfit_and_oracles(_model(SPACES[space]), center=True)
    for fast_fold, slow_fold in zip(crossfit.by_fold, oracles, strict=True):
        _assert_close(fast_fold, slow_fold)
    _assert_close(crossfit.total, plain)


def test_centered_return_objective_subtracts_the_buffer_mean():
    def fn(m):
        records = RolloutRecords.from_buffer(m.rollout_buffer)
        everything = np.ones((N_STEPS, N_ENVS), dtype=bool)
        with th.no_grad():
            oracle = [float(return_objective_fn(m, everything, center)(m.policy)) for center in (False, True)]
        fast = [ReturnObjective(center=center).value(m.policy, records) for center in (False, True)]
        return oracle, fast, float(records.advantages.mean())

    callback = CaptureAtRolloutEnd(fn, 1)
    model = _model(SPACES["discrete"])
    model.learn(N_STEPS * N_ENVS, callback=callback)
    oracle, fast, mean_advantage = callback.result
    assert mean_advantage != 0 and oracle[0] != pytest.approx(oracle[1])
    assert fast == pytest.approx(oracle, rel=1e-4)
    assert repr(ReturnObjective(center=True)) == "ReturnObjective(center=True)"
    with pytest.raises(ValueError, match="center must be a bool"):
        ReturnObjective(center=1)  # type: ignore[arg-type]


def test_crossfit_shared_cnn_matches_oracle():
    model = _model(
        lambda: FakeImageEnv(screen_height=7, screen_width=7, n_channels=3, discrete=True),
        policy="CnnPolicy",
        policy_kwargs=dict(features_extractor_class=MiniGridCNN, share_features_extractor=True, net_arch=[16]),
    )
    crossfit, oracles, _ = _crossfit_and_oracles(model, n_folds=4)
    for fast, slow in zip(crossfit.by_fold, oracles, strict=True):
        _assert_close(fast, slow)


def test_fold_ids_are_contiguous_blocks_of_steps():
    folds = fold_ids(7, 2, 3)
    np.testing.assert_array_equal(folds[:, 0], [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(folds[:, 0], folds[:, 1])
    for bad in (1, 8, 2.0, True):
        with pytest.raises(ValueError, match="n_folds"):
            fold_ids(7, 2, bad)


def test_crossfit_statistics_by_hand():
    # 3 folds, 4 records (one env): record i sits in fold folds[i]; by_fold[j, i] is its score along g_j.
    folds = np.array([[0], [0], [1], [2]])
    by_fold = np.array(
        [
            [[9.0], [9.0], [1.0], [-2.0]],  # along g_0
            [[2.0], [4.0], [9.0], [-4.0]],  # along g_1
            [[4.0], [2.0], [3.0], [9.0]],  # along g_2
        ]
    )
    crossfit = CrossFitScores(by_fold=by_fold, folds=folds)
    np.testing.assert_allclose(crossfit.total[:, 0], [15.0, 15.0, 13.0, 3.0])
    # out of fold: record 0 -> (2, 4), record 1 -> (4, 2), record 2 -> (1, 3), record 3 -> (-2, -4)
    np.testing.assert_allclose(crossfit.scores[:, 0], 1.5 * np.array([6.0, 6.0, 4.0, -6.0]))
    within = np.mean([2.0, 2.0, 2.0, 2.0])  # each pair's variance (ddof=1)
    assert crossfit.noise_std == pytest.approx(3 * np.sqrt(within / 2))
    between = np.var([3.0, 3.0, 2.0, -3.0], ddof=1)
    assert crossfit.reliability == pytest.approx(1 - within / (2 * between))
    two = CrossFitScores(by_fold=by_fold[:2], folds=np.minimum(folds, 1))
    assert np.isnan(two.noise_std) and np.isnan(two.reliability)


def _poison(m, records=((3, 0), (9, 1))):
    """Make some records' data non-finite, as a NaN reward would (GAE carries it back through the episode)."""
    buffer = m.rollout_buffer
    step, env = records[0]
    buffer.rewards[step, env] = np.nan
    buffer.advantages[step, env] = buffer.returns[step, env] = np.nan
    step, env = records[1]
    buffer.advantages[step, env] = np.inf


@pytest.mark.parametrize("space", ["discrete", "box"])
def test_non_finite_records_are_left_out_of_scores(space):
    def fn(m):
        _poison(m)
        crossfit = crossfit_influence_scores(
            m.policy, RolloutRecords.from_buffer(m.rollout_buffer), 3, ent_coef=m.ent_coef, vf_coef=m.vf_coef
        )
        return m.compute_influence(), oracle_scores(m), crossfit

    callback = CaptureAtRolloutEnd(fn, 2)
    model = _model(SPACES[space])
    model.learn(N_STEPS * N_ENVS * 2, callback=callback)
    fast, slow, crossfit = callback.result
    bad = np.zeros_like(fast, dtype=bool)
    bad[3, 0] = bad[9, 1] = True
    assert np.isnan(fast[bad]).all() and np.isnan(slow[bad]).all() and np.isnan(crossfit.scores[bad]).all()
    _assert_close(fast[~bad], slow[~bad])
    assert np.isfinite(crossfit.scores[~bad]).all() and np.isfinite(crossfit.noise_std)


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("space", ["discrete", "box"])
def test_cuda_matches_oracle(space):
    fast, slow = _both(_model(SPACES[space], device="cuda"))
    _assert_close(fast, slow)


def test_first_scoring_of_a_process_emits_no_warning():
    import subprocess
    import sys

    code = (
        "import warnings; warnings.simplefilter('error');"
        "from sb3_influence import InfluencePPO;"
        "InfluencePPO('MlpPolicy', 'CartPole-v1', n_steps=16, batch_size=16, n_epochs=1).learn(32)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
