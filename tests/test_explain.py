"""explain_action: the same ranking as compute_influence with an ActionObjective, and no side effects on the model."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv

from sb3_influence import ActionObjective, InfluencePPO, influence_scores
from sb3_influence.explain import Explanation, collect_rollout, explain_action

KW = dict(n_steps=32, batch_size=16, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[16]))


@pytest.fixture(scope="module")
def trained():
    model = InfluencePPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), filter_fraction=0.5, **KW)
    model.learn(32 * 2 * 2)
    return model


def test_ranking_matches_compute_influence(trained):
    model = trained
    env = make_vec_env("CartPole-v1", n_envs=2, seed=5)
    obs, action = env.reset()[0], 1
    explanation = explain_action(model, env, obs, action, n_steps=24, seed=3)
    assert isinstance(explanation, Explanation)
    assert explanation.scores.shape == (24, 2) and len(explanation) == 48

    # the same rollout again (same seed), put in the model's place, scored by compute_influence
    buffer = collect_rollout(model, make_vec_env("CartPole-v1", n_envs=2, seed=5), 24, seed=3)
    own_buffer = model.rollout_buffer
    try:
        model.rollout_buffer = buffer
        reference = model.compute_influence(ActionObjective(obs, action))
    finally:
        model.rollout_buffer = own_buffer
    np.testing.assert_array_equal(explanation.scores, reference)
    np.testing.assert_array_equal(explanation.order, np.argsort(-reference.reshape(-1), kind="stable"))
    # and scoring the explanation's own records directly gives the same scores
    direct = influence_scores(
        model.policy,
        explanation.records,
        ActionObjective(obs, action),
        ent_coef=model.ent_coef,
        vf_coef=model.vf_coef,
        normalize_advantage=model.normalize_advantage,
    )
    np.testing.assert_array_equal(explanation.scores, direct)


def test_explanation_structure(trained):
    explanation = explain_action(trained, "CartPole-v1", np.zeros(4, dtype=np.float32), 0, n_steps=40, seed=0)
    flat = explanation.scores.reshape(-1)
    assert sorted(explanation.order.tolist()) == list(range(40))
    assert np.all(np.diff(explanation.ranked_scores) <= 0)
    np.testing.assert_array_equal(explanation.ranked_scores, flat[explanation.order])
    np.testing.assert_array_equal(explanation.steps, explanation.order)  # one env: index == step
    np.testing.assert_array_equal(explanation.envs, 0)
    records = explanation.records
    np.testing.assert_array_equal(explanation.observations, records.observations[explanation.order])
    np.testing.assert_array_equal(explanation.advantages, records.advantages[explanation.order])
    np.testing.assert_array_equal(explanation.returns, records.returns[explanation.order])
    top, bottom = explanation.top(3), explanation.bottom(3)
    assert [r.rank for r in top] == [0, 1, 2] and [r.rank for r in bottom] == [39, 38, 37]
    assert top[0].score == flat.max() and bottom[0].score == flat.min()
    assert top[0].index == explanation.order[0] and explanation[-1].rank == 39
    assert len(list(explanation)) == 40 and len(explanation.top(100)) == 40
    assert explanation.log_prob <= 0.0
    text = str(explanation)
    assert "Top 5" in text and "Bottom 5" in text and len(text.splitlines()) == 15
    with pytest.raises(IndexError):
        explanation[40]
    with pytest.raises(AttributeError):
        explanation.order = None  # frozen


def test_no_side_effects_on_the_model(trained):
    model = trained
    last_obs, starts = model._last_obs.copy(), model._last_episode_starts.copy()
    buffer = model.rollout_buffer
    advantages = buffer.advantages.copy()
    params = [p.detach().clone() for p in model.policy.parameters()]
    torch_state, np_state = th.get_rng_state(), np.random.get_state()
    steps = model.num_timesteps
    explain_action(model, "CartPole-v1", np.zeros(4, dtype=np.float32), 1, n_steps=16)
    assert th.equal(th.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert model.rollout_buffer is buffer and np.array_equal(buffer.advantages, advantages)
    assert np.array_equal(model._last_obs, last_obs) and np.array_equal(model._last_episode_starts, starts)
    assert model.num_timesteps == steps
    assert all(th.equal(p, q) for p, q in zip(model.policy.parameters(), params, strict=True))


def test_seed_reproducible_and_plain_ppo():
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), **KW)
    a = explain_action(model, gym.make("CartPole-v1"), np.zeros(4, dtype=np.float32), 1, n_steps=20, seed=7)
    b = explain_action(model, gym.make("CartPole-v1"), np.zeros(4, dtype=np.float32), 1, n_steps=20, seed=7)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert isinstance(collect_rollout(model, make_vec_env("CartPole-v1"), 4), RolloutBuffer)
    with pytest.raises(ValueError, match="spaces"):
        explain_action(model, "Pendulum-v1", np.zeros(4), 1, n_steps=4)


def test_dict_observations_and_batch_of_probes():
    env = make_vec_env(lambda: SimpleMultiObsEnv(random_start=True), n_envs=1, seed=0)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    obs = env.reset()
    probes = {key: np.concatenate([value, value]) for key, value in obs.items()}  # a batch of two pairs
    explanation = explain_action(model, env, probes, np.array([0, 1]), n_steps=12, seed=0)
    assert isinstance(collect_rollout(model, env, 2), DictRolloutBuffer)
    assert set(explanation.observations) == {"vec", "img"}
    assert explanation.observations["img"].shape[0] == 12
    record = explanation.top(1)[0]
    assert set(record.observation) == {"vec", "img"}
    assert "vec:" in str(explanation)


def test_continuous_actions():
    model = PPO("MlpPolicy", "Pendulum-v1", **KW)
    explanation = explain_action(model, "Pendulum-v1", np.array([1.0, 0.0, 0.0]), np.array([0.5]), n_steps=16, seed=0)
    assert explanation.actions.shape == (16, 1) and np.isfinite(explanation.scores).all()


def test_collect_rollout_uses_each_algorithm_own_collection():
    from sb3_contrib import RecurrentPPO
    from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
    from stable_baselines3 import A2C

    a2c = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=4, seed=0)
    assert collect_rollout(a2c, make_vec_env("CartPole-v1", n_envs=3), 5, seed=0).advantages.shape == (5, 3)
    lstm = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, n_epochs=1, seed=0)
    lstm.learn(16)
    states = [t.clone() for t in lstm._last_lstm_states.pi]
    buffer = collect_rollout(lstm, make_vec_env("CartPole-v1", n_envs=2), 6, seed=0)
    assert isinstance(buffer, RecurrentRolloutBuffer) and buffer.hidden_states_pi.shape[2] == 2
    assert all(th.equal(a, b) for a, b in zip(lstm._last_lstm_states.pi, states, strict=True))
    with pytest.raises(ValueError, match="recurrent"):
        explain_action(lstm, "CartPole-v1", np.zeros(4, dtype=np.float32), 1, n_steps=4)


def test_maskable_explanation_uses_the_masks():
    from sb3_contrib.common.envs import InvalidActionEnvDiscrete

    from sb3_influence import InfluenceMaskablePPO

    env = make_vec_env(lambda: InvalidActionEnvDiscrete(dim=4, n_invalid_actions=2), n_envs=1, seed=0)
    model = InfluenceMaskablePPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    obs = env.reset()[0]
    masks = np.array([True, True, False, False])
    masked = explain_action(model, env, obs, 1, n_steps=12, seed=0, action_masks=masks)
    unmasked = explain_action(model, env, obs, 1, n_steps=12, seed=0)
    assert masked.records.action_masks is not None and masked.records.action_masks.shape == (12, 4)
    assert masked.log_prob > unmasked.log_prob  # two actions instead of four
    assert not np.allclose(masked.scores, unmasked.scores)
