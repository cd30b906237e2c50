"""InfluencePPO as a drop-in PPO: filtering in training, bit-identity at p = 0, side effects, errors."""

import dataclasses
import warnings
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from sb3_influence import ActionObjective, InfluenceA2C, InfluencePPO, ReturnObjective
from sb3_influence.filtering import reliability_filter_mask
from sb3_influence.influence_ppo import InfluenceReport
from sb3_influence.scoring import model_crossfit_scores

KW = dict(n_steps=32, batch_size=16, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[16]))


def _params(model):
    return [p.detach().clone() for p in model.policy.parameters()]


def _assert_same_params(a, b):
    for x, y in zip(_params(a), _params(b), strict=True):
        assert th.equal(x, y)


@pytest.mark.parametrize(
    "env_id, policy, extra",
    [
        ("CartPole-v1", "MlpPolicy", {}),
        ("Pendulum-v1", "MlpPolicy", dict(use_sde=True, ent_coef=0.01)),
        (lambda: SimpleMultiObsEnv(random_start=True), "MultiInputPolicy", {}),
    ],
)
def test_zero_fraction_is_bit_identical_to_ppo(env_id, policy, extra):
    models = []
    for cls, kwargs in ((PPO, {}), (InfluencePPO, dict(filter_fraction=0.0))):
        np.random.seed(0)  # SimpleMultiObsEnv draws its maze from the global RNG
        env = make_vec_env(env_id, n_envs=2, seed=0)
        model = cls(policy, env, **KW, **extra, **kwargs)
        model.learn(32 * 2 * 3)
        models.append(model)
    _assert_same_params(*models)
    assert models[1].last_influence.n_dropped == 0


def _count_trained_records(model):
    """Wrap the buffer's get() to count the records each epoch of train() sees."""
    counts = []
    original = model.rollout_buffer.get

    def get(batch_size=None):
        n = 0
        for batch in original(batch_size):
            n += len(batch.advantages)
            yield batch
        counts.append(n)

    model.rollout_buffer.get = get
    return counts


@pytest.mark.parametrize("mode", ["negative", "all", "random"])
def test_update_uses_only_kept_records(mode):
    model = InfluencePPO(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        filter_fraction=0.5,
        filter_mode=mode,
        filter_whole_minibatches=False,
        **KW,
    )
    counts = _count_trained_records(model)
    model.learn(64)
    report = model.last_influence
    n = report.scores.size
    n_neg = int((report.scores < 0).sum())
    expected_drop = n_neg // 2 if mode == "negative" else n // 2
    assert report.n_dropped == expected_drop > 0
    assert counts == [report.n_kept] * model.n_epochs
    if mode != "random":
        assert report.scores[~report.kept].max() <= report.scores[report.kept].min()


def test_never_fewer_than_one_minibatch():
    model = InfluencePPO("MlpPolicy", "CartPole-v1", filter_fraction=1.0, filter_mode="all", **KW)
    model.learn(32)
    assert model.last_influence.n_kept == model.batch_size


class _CallAtRolloutEnd(BaseCallback):
    def __init__(self, objective=None):
        super().__init__()
        self.objective, self.results = objective, []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        buffer = self.model.rollout_buffer
        before = (buffer.observations.copy(), buffer.advantages.copy(), buffer.actions.copy(), buffer.returns.copy())
        np_state, th_state = np.random.get_state(), th.get_rng_state()
        params = _params(self.model)
        grads = [None if p.grad is None else p.grad.clone() for p in self.model.policy.parameters()]
        scores = self.model.compute_influence(self.objective)
        assert np.array_equal(np.random.get_state()[1], np_state[1]) and th.equal(th.get_rng_state(), th_state)
        for x, y in zip(before, (buffer.observations, buffer.advantages, buffer.actions, buffer.returns), strict=True):
            np.testing.assert_array_equal(x, y)
        for x, y in zip(params, _params(self.model), strict=True):
            assert th.equal(x, y)
        for g, p in zip(grads, self.model.policy.parameters(), strict=True):
            assert (g is None and p.grad is None) or th.equal(g, p.grad)
        self.results.append(scores)


def test_compute_influence_from_callback_changes_nothing():
    env_fn = lambda: IdentityEnv(3, ep_length=8)  # noqa: E731
    plain = InfluencePPO("MlpPolicy", make_vec_env(env_fn, n_envs=2, seed=0), **KW)
    plain.learn(32 * 2 * 2)
    probed = InfluencePPO("MlpPolicy", make_vec_env(env_fn, n_envs=2, seed=0), **KW)
    callback = _CallAtRolloutEnd(ActionObjective(np.array([0, 1]), np.array([0, 1])))
    probed.learn(32 * 2 * 2, callback=callback)
    assert len(callback.results) == 2 and callback.results[0].shape == (32, 2)
    _assert_same_params(plain, probed)  # training proceeded exactly as without the probe
    np.testing.assert_array_equal(plain.last_influence.scores, probed.last_influence.scores)


@pytest.mark.parametrize("mode", ["negative", "adaptive", "reliability"])
@pytest.mark.parametrize("center", [False, True])
def test_compute_influence_matches_last_report_and_objective_default(mode, center):
    # the cross-fitted modes build one objective per fold: they must inherit the model's centring
    objective = ReturnObjective(center=center)
    model = InfluencePPO("MlpPolicy", "CartPole-v1", influence_objective=objective, filter_mode=mode, **KW)
    callback = _CallAtRolloutEnd()
    model.learn(32, callback=callback)
    if mode == "negative":
        np.testing.assert_array_equal(callback.results[0], model.last_influence.scores)
    else:  # the report sums the folds' scores: the same quantity, summed in another order in float32
        np.testing.assert_allclose(callback.results[0], model.last_influence.scores, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "algo, mode, centred",
    [
        (InfluencePPO, "reliability", True),  # InfluencePPO's default rule
        (InfluencePPO, "adaptive", False),
        (InfluencePPO, "negative", False),  # the paper's fixed-p modes score as the paper does
        (InfluencePPO, "all", False),
        (InfluenceA2C, None, False),  # the twins' default (adaptive) rule
    ],
)
def test_default_objective_is_centred_in_the_reliability_mode_only(algo, mode, centred):
    kwargs = {} if mode is None else dict(filter_mode=mode)
    model = algo("MlpPolicy", "CartPole-v1", n_steps=32, **kwargs)
    assert isinstance(model.objective, ReturnObjective) and model.objective.center is centred
    assert model.influence_objective is None  # the setting stays as given; the objective in use is derived
    mine = ReturnObjective(center=not centred)
    model.influence_objective = mine
    assert model.objective is mine


def test_default_scores_follow_the_centred_objective():
    # InfluencePPO() scores along ReturnObjective(center=True): compute_influence() and the IIF step's report agree
    # with it, and differ from the uncentred objective's
    probes = [_CallAtRolloutEnd(), _CallAtRolloutEnd(ReturnObjective(center=True)), _CallAtRolloutEnd(ReturnObjective())]
    model = InfluencePPO("MlpPolicy", "CartPole-v1", **KW)
    model.learn(32, callback=probes)
    default, centred, uncentred = (p.results[0] for p in probes)
    np.testing.assert_array_equal(default, centred)
    np.testing.assert_allclose(default, model.last_influence.scores, rtol=1e-4, atol=1e-6)
    assert not np.allclose(default, uncentred, rtol=1e-3, atol=1e-6)


def test_report_is_frozen_and_read_only():
    model = InfluencePPO("MlpPolicy", "CartPole-v1", **KW)
    model.learn(32)
    report = model.last_influence
    assert isinstance(report, InfluenceReport)
    assert report.scores.shape == report.kept.shape == (32, 1) and report.kept.dtype == bool
    assert report.seconds > 0 and report.update_seconds is not None and report.num_timesteps == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.seconds = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        report.scores[0, 0] = 1.0


def test_non_finite_scores_leave_records_out_and_skip_an_empty_update(monkeypatch):
    model = InfluencePPO("MlpPolicy", "CartPole-v1", filter_fraction=0.0, filter_mode="negative", **KW)
    nan = np.full((32, 1), np.nan)
    monkeypatch.setattr(model, "_score_rollout", lambda records: (nan, nan, float("nan"), float("nan")))
    before = _params(model)
    with pytest.warns(RuntimeWarning, match="non-finite") as record:
        model.learn(64)
    assert any("update is skipped" in str(w.message) for w in record)
    report = model.last_influence
    assert report.n_kept == 0 and report.n_nonfinite == 32 and not report.finite and report.update_seconds is None
    for x, y in zip(before, _params(model), strict=True):
        assert th.equal(x, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(filter_fraction=-0.1), "filter_fraction"),
        (dict(filter_fraction=1.01), "filter_fraction"),
        (dict(filter_mode="bottom"), "filter_mode"),
        (dict(influence_chunk_size=0), "influence_chunk_size"),
        (dict(influence_objective="return"), "influence_objective"),
        (dict(influence_preconditioner="lbfgs"), "influence_preconditioner"),
        (dict(filter_min_fraction=1.5), "filter_min_fraction"),
        (dict(filter_min_fraction=True), "filter_min_fraction"),
        (dict(filter_min_reliability=float("nan")), "filter_min_reliability"),
        (dict(filter_mode="negative", filter_min_fraction=0.1), "filter_min_fraction"),
        (dict(influence_advantage_norm="epoch"), "influence_advantage_norm"),
        (dict(influence_ranking="oracle"), "influence_ranking"),
        (dict(filter_mode="adaptive", influence_ranking="plain"), "influence_ranking"),
        (dict(filter_mode="negative", influence_ranking="plain"), "influence_ranking"),
        (dict(filter_mode="negative", influence_ranking="crossfit"), "influence_ranking"),
        (dict(influence_preconditioner="adam", policy_kwargs=dict(optimizer_class=th.optim.SGD)), "Adam"),
        (dict(rollout_buffer_class=type("MyBuffer", (RolloutBuffer,), {})), "MyBuffer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InfluencePPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_unsupported_policy_is_named():
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    with pytest.raises(ValueError, match="RecurrentActorCriticPolicy"):
        InfluencePPO(RecurrentActorCriticPolicy, "CartPole-v1")


@pytest.mark.parametrize(
    "env_fn, normalize", [(lambda: IdentityEnvBox(ep_length=8), True), (lambda: IdentityEnvMultiBinary(3, ep_length=8), False)]
)
def test_vecnormalize_progress_bar_and_callbacks(env_fn, normalize):
    pytest.importorskip("tqdm")
    pytest.importorskip("rich")
    env = make_vec_env(env_fn, n_envs=2, seed=0)
    env = VecNormalize(env) if normalize else env
    model = InfluencePPO("MlpPolicy", env, filter_fraction=1.0, filter_mode="negative", **KW)
    callback = _CallAtRolloutEnd()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(32 * 2 * 2, callback=callback, progress_bar=True)
    assert len(callback.results) == 2
    assert model.last_influence.n_dropped > 0


def test_learns_cartpole():
    # A smoke test that filtering does not break learning: random play scores about 20.
    model = InfluencePPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=0), n_steps=128, batch_size=64, seed=0)
    model.learn(12_000)
    mean_reward, _ = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=10, deterministic=True)
    assert mean_reward > 100


class _NaNRewardOnce(gym.Wrapper):
    """Returns a NaN reward at the 40th step of the env's life: plain PPO then crashes on NaN logits."""

    def __init__(self, env):
        super().__init__(env)
        self.t = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return obs, float("nan") if self.t == 40 else reward, terminated, truncated, info


@pytest.mark.parametrize("mode", ["adaptive", "negative"])
def test_nan_reward_records_are_left_out_and_training_goes_on(mode):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=_NaNRewardOnce)
    model = InfluencePPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, filter_mode=mode)
    reports = []

    class Keep(BaseCallback):
        def _on_step(self):
            return True

        def _on_rollout_start(self):
            if self.model.last_influence is not None:
                reports.append(self.model.last_influence)

    with pytest.warns(RuntimeWarning, match=r"40 of 128 record\(s\)|80 of 128 record\(s\)"):
        model.learn(64 * 2 * 3, callback=Keep())
    first = reports[0]
    # GAE carries the NaN back to the start of each env's episode: those records are left out, the rest are used
    assert first.n_nonfinite > 0 and not first.finite and first.n_kept > 0
    assert not first.kept[~np.isfinite(first.scores)].any()
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    assert model.last_influence.finite and model.num_timesteps == 384


def test_adaptive_mode_logs_its_decision():
    assert InfluencePPO("MlpPolicy", "CartPole-v1").filter_mode == "reliability"  # the default, p = 0.5
    assert InfluencePPO("MlpPolicy", "CartPole-v1").fraction == 0.5
    model = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=32, n_epochs=1, seed=0, filter_mode="adaptive")
    assert model.fraction == 1.0
    model.learn(128)
    logged = model.logger.name_to_value  # recorded in train(), dumped at the next iteration
    report = model.last_influence
    assert logged["influence/dropped"] == report.n_dropped
    assert logged["influence/reliability"] == report.reliability
    assert logged["influence/noise_std"] == report.noise_std and report.noise_std > 0
    assert logged["influence/nonfinite_records"] == 0
    # the rule's result, rounded to whole minibatches
    assert report.n_kept % 32 == 0


def test_mode_defaults_of_the_cut_off_and_the_floor():
    model = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32)
    assert model.filter_min_reliability is None and model.filter_min_fraction is None
    assert (model.fraction, model.min_reliability, model.min_fraction) == (0.5, float("-inf"), 0.125)
    small = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, filter_fraction=0.1)
    assert small.min_fraction == 0.1  # never above p
    bare = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, filter_min_fraction=0, filter_min_reliability=0)
    assert (bare.min_reliability, bare.min_fraction) == (0.0, 0.0)
    adaptive = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, filter_mode="adaptive")
    assert (adaptive.min_reliability, adaptive.min_fraction) == (0.0, 0.0)
    paper = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, filter_mode="negative")
    assert paper.min_fraction == 0.0


#: One CartPole rollout of 512 steps, with a gate that opens at the first rollout whose episodes differ.
_ONE_ROLLOUT = dict(n_steps=512, batch_size=64, n_epochs=1, seed=0, filter_gate_rollouts=1)


def test_reliability_mode_drops_what_its_rule_says_on_the_cross_fitted_scores():
    model = InfluencePPO("MlpPolicy", "CartPole-v1", filter_mode="reliability", **_ONE_ROLLOUT)
    assert model.fraction == 0.5
    captured = {}

    def capture(scores, reliability, *args):
        captured.update(scores=np.array(scores), reliability=reliability, args=args)
        return reliability_filter_mask(scores, reliability, *args)

    with mock.patch("sb3_influence.iif.reliability_filter_mask", side_effect=capture):
        model.learn(512)
    report = model.last_influence
    assert captured["reliability"] == report.reliability and np.isfinite(report.reliability)
    assert captured["args"] == (0.5, float("-inf"), 64, 0.125)  # p, no cut-off, one minibatch, the floor
    wanted = int((~reliability_filter_mask(captured["scores"], report.reliability, *captured["args"])).sum())
    assert report.n_kept % 64 == 0 and abs(report.n_dropped - wanted) < 64  # the rule's count, in whole minibatches
    assert model.logger.name_to_value["influence/reliability"] == report.reliability


def test_load_of_a_zip_that_stored_the_old_default_ranking(tmp_path):
    # before influence_ranking=None, every model stored "crossfit", also with the fixed-p modes that now reject it
    model = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, filter_mode="negative")
    model.influence_ranking = "crossfit"
    model.save(tmp_path / "old")
    loaded = InfluencePPO.load(tmp_path / "old")
    assert loaded.influence_ranking is None and loaded.ranking == "plain"
    adaptive = InfluencePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, filter_mode="adaptive")
    adaptive.influence_ranking = "crossfit"
    adaptive.save(tmp_path / "adaptive")
    assert InfluencePPO.load(tmp_path / "adaptive").influence_ranking == "crossfit"  # still valid: kept


def test_ranking_defaults_to_plain_except_in_adaptive_mode():
    assert InfluencePPO("MlpPolicy", "CartPole-v1").ranking == "plain"  # the default reliability rule
    assert InfluencePPO("MlpPolicy", "CartPole-v1", filter_mode="adaptive").ranking == "crossfit"
    assert InfluencePPO("MlpPolicy", "CartPole-v1", filter_mode="negative").ranking == "plain"
    assert InfluencePPO("MlpPolicy", "CartPole-v1", influence_ranking="crossfit").ranking == "crossfit"


@pytest.mark.parametrize("ranking", ["crossfit", "plain", None])
def test_reliability_mode_ranks_by_the_chosen_scores(ranking):
    # "plain" (the default, None) ranks by the plain TracIn scores (the reported ones); the share still comes from
    # the cross-fitted rho
    model = InfluencePPO("MlpPolicy", "CartPole-v1", influence_ranking=ranking, **_ONE_ROLLOUT)
    ranking = model.ranking
    captured = {}

    def capture(scores, reliability, *args):
        captured.update(scores=np.array(scores), reliability=reliability)
        return reliability_filter_mask(scores, reliability, *args)

    def capture_crossfit(*args, **kwargs):
        captured["crossfit"] = model_crossfit_scores(*args, **kwargs)
        return captured["crossfit"]

    with (
        mock.patch("sb3_influence.iif.reliability_filter_mask", side_effect=capture),
        mock.patch("sb3_influence.iif.model_crossfit_scores", side_effect=capture_crossfit),
    ):
        model.learn(512)
    report, crossfit = model.last_influence, captured["crossfit"]
    np.testing.assert_array_equal(report.scores, crossfit.total)  # the plain scores are reported either way
    np.testing.assert_array_equal(captured["scores"], (crossfit.total if ranking == "plain" else crossfit.scores).ravel())
    assert captured["reliability"] == crossfit.reliability
    assert report.n_dropped > 0
    if ranking == "plain":  # the dropped records are the lowest plain scores
        assert report.scores[~report.kept].max() <= report.scores[report.kept].min()


class _ConstantOutcomeEnv(gym.Env):
    """Random observations, reward 1 at every step, episodes of 8 steps: every episode returns 8."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), {}

    def step(self, action):
        self._t += 1
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), 1.0, False, self._t >= 8, {}


@pytest.mark.parametrize("filter_mode", ["adaptive", "reliability"])
def test_cross_fitted_rules_drop_nothing_without_outcome_variation(filter_mode):
    extra = dict(n_steps=64, batch_size=16, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[16]))
    rule = dict(filter_mode=filter_mode, filter_fraction=1.0, filter_min_reliability=-1e9)
    if filter_mode == "adaptive":
        rule["filter_confidence"] = 0.5  # every negative cross-fitted score is a candidate
    ppo = PPO("MlpPolicy", make_vec_env(_ConstantOutcomeEnv, n_envs=2, seed=0), **extra).learn(256)
    iif = InfluencePPO("MlpPolicy", make_vec_env(_ConstantOutcomeEnv, n_envs=2, seed=0), **extra, **rule).learn(256)
    report = iif.last_influence
    assert iif.no_outcome_variation() and report.gated and report.n_dropped == 0
    assert iif.logger.name_to_value["influence/gated"] == 1 and np.isfinite(report.reliability)
    _assert_same_params(ppo, iif)  # nothing dropped in any iteration: PPO bit for bit
    fixed = InfluencePPO(
        "MlpPolicy", make_vec_env(_ConstantOutcomeEnv, n_envs=2, seed=0), **extra, filter_mode="negative", filter_fraction=1.0
    )
    fixed.learn(64)
    assert not fixed.last_influence.gated and fixed.last_influence.n_dropped > 0  # the paper's rule is not gated
    # episodes with different returns open the gate
    varied = InfluencePPO("MlpPolicy", "CartPole-v1", **dict(extra, n_steps=256), **rule, filter_gate_rollouts=1).learn(256)
    assert len(varied.ep_info_buffer) >= 2 and not varied.no_outcome_variation() and not varied.last_influence.gated
    iif.ep_info_buffer.clear()
    assert iif.no_outcome_variation()  # no episode yet: nothing to learn from is known
    iif.ep_info_buffer.append({"r": 8.0, "l": 8, "t": 0.0})
    assert iif.no_outcome_variation()  # one episode cannot vary
    iif.ep_info_buffer.append({"r": 7.0, "l": 8, "t": 0.0})
    assert not iif.no_outcome_variation()
    # without Monitor the returns are not seen: the gate stays open, with one warning
    unmonitored = InfluencePPO("MlpPolicy", DummyVecEnv([_ConstantOutcomeEnv]), **extra, **rule)
    with pytest.warns(UserWarning, match="cannot see episode returns"):
        unmonitored.learn(128)
    assert len(unmonitored.ep_info_buffer) == 0 and not unmonitored.last_influence.gated
    monitored = InfluencePPO("MlpPolicy", VecMonitor(DummyVecEnv([_ConstantOutcomeEnv])), **extra, **rule).learn(64)
    assert len(monitored.ep_info_buffer) > 0 and monitored.last_influence.gated
    ungated = InfluencePPO(
        "MlpPolicy", make_vec_env(_ConstantOutcomeEnv, n_envs=2, seed=0), **extra, **rule, filter_outcome_gate=False
    ).learn(256)
    assert not ungated.last_influence.gated and ungated.no_outcome_variation()
    with pytest.raises(ValueError, match="filter_outcome_gate"):
        InfluencePPO("MlpPolicy", "CartPole-v1", filter_outcome_gate="yes")


def test_outcome_gate_looks_at_the_last_rollouts_episodes_only():
    # an old success in SB3's 100-episode window does not open the gate once the last rollout's episodes all fail
    model = InfluencePPO(
        "MlpPolicy", make_vec_env(_ConstantOutcomeEnv, n_envs=2, seed=0), n_steps=32, batch_size=16, n_epochs=1, seed=0
    ).learn(64)
    assert model._episodes_in_last_rollout() == 8  # 2 envs x 32 steps of 8-step episodes
    model.ep_info_buffer.appendleft({"r": 100.0, "l": 8, "t": 0.0})
    assert len(model.ep_info_buffer) == 9 and model.no_outcome_variation()
    model.ep_info_buffer.append({"r": 100.0, "l": 8, "t": 0.0})  # one success among the last rollout's episodes
    assert not model.no_outcome_variation()


def test_outcome_gate_remembers_episodes_across_rollouts_shorter_than_an_episode():
    # 4-step rollouts of 8-step episodes: the first rollout ends no episode (nothing known: closed), the second
    # ends two with the same return, the third none (the two are remembered)
    model = InfluencePPO(
        "MlpPolicy",
        make_vec_env(_ConstantOutcomeEnv, n_envs=2, seed=0),
        n_steps=4,
        batch_size=4,
        n_epochs=1,
        seed=0,
        filter_mode="reliability",
    )
    gated = []
    for _ in range(3):
        model.learn(8, reset_num_timesteps=False)
        gated.append(model.last_influence.gated)
    assert gated == [True, True, True]
    assert len(model.ep_info_buffer) == 2


@pytest.mark.parametrize(
    "rollouts, expected",
    [
        (1, [True, False, False, True, False, True, True, False, False]),
        (2, [True, True, False, True, True, True, True, True, False]),
        (3, [True, True, True, True, True, True, True, True, True]),
    ],
)
def test_outcome_gate_opens_after_filter_gate_rollouts_varied_rollouts(rollouts, expected, monkeypatch):
    # hand-made sequence of rollouts: whether each one's recent episodes showed no outcome variation
    no_variation = iter([True, False, False, True, False, True, True, False, False])
    model = InfluencePPO("MlpPolicy", make_vec_env(_ConstantOutcomeEnv, n_envs=1, seed=0), n_steps=16, batch_size=16, seed=0)
    model.filter_gate_rollouts = rollouts
    monkeypatch.setattr(model, "no_outcome_variation", lambda: next(no_variation))
    monkeypatch.setattr(model, "_outcomes_observable", lambda: True)
    assert [model._outcome_gate_closed() for _ in expected] == expected


def test_two_rollout_gate_spares_the_first_varied_rollout(tmp_path):
    # CartPole's episodes differ from the first rollout: one varied rollout does not open the gate, the second does
    extra = dict(
        n_steps=128, batch_size=64, n_epochs=1, seed=0, filter_min_reliability=-1e9, policy_kwargs=dict(net_arch=[16])
    )
    gated = []
    model = InfluencePPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), filter_gate_rollouts=2, **extra)
    for _ in range(3):
        model.learn(256, reset_num_timesteps=False)
        gated.append(model.last_influence.gated)
    assert gated == [True, False, False] and model._gate_streak == 3
    model.save(tmp_path / "model")
    loaded = InfluencePPO.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=2, seed=0))
    assert loaded.filter_gate_rollouts == 2 and loaded._gate_streak == 0  # the count starts again after a load
    loaded.learn(256, reset_num_timesteps=False)
    assert loaded.last_influence.gated
    one = InfluencePPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), filter_gate_rollouts=1, **extra)
    assert one.learn(256).last_influence.gated is False
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="filter_gate_rollouts"):
            InfluencePPO("MlpPolicy", "CartPole-v1", filter_gate_rollouts=bad)


@pytest.mark.parametrize("use_sde", [False, True])
def test_adaptive_rule_abstains_on_continuous_actions(use_sde):
    extra = dict(use_sde=use_sde, n_steps=96, batch_size=32, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[16]))
    models = [PPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), **extra).learn(96 * 2 * 2)]
    models.append(InfluencePPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), **extra))
    with pytest.warns(UserWarning, match=r"drops nothing here: continuous \(Box\) actions"):
        models[1].learn(96 * 2 * 2)
    _assert_same_params(*models)  # nothing dropped: PPO bit for bit
    assert models[1].last_influence.n_dropped == 0 and np.isfinite(models[1].last_influence.reliability)
    reliability = InfluencePPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), **extra, filter_mode="reliability")
    with pytest.warns(UserWarning, match=r"'reliability' drops nothing here: continuous"):
        reliability.learn(96 * 2 * 2)
    _assert_same_params(models[0], reliability)
    fixed = InfluencePPO("MlpPolicy", "Pendulum-v1", **extra, filter_mode="negative", filter_fraction=1.0)
    fixed.learn(96)
    assert fixed.last_influence.n_dropped > 0  # the fixed-p modes still filter continuous actions
