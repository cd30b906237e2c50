"""Save/load round trips between InfluencePPO and PPO."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_influence import ActionObjective, FilteredRolloutBuffer, InfluencePPO, ReturnObjective

KW = dict(n_steps=32, batch_size=16, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[16]))


def _same_policy(a, b):
    for x, y in zip(a.policy.state_dict().values(), b.policy.state_dict().values(), strict=True):
        assert th.equal(x, y)


def test_round_trip_keeps_influence_arguments(tmp_path):
    objective = ActionObjective(np.zeros((1, 4), dtype=np.float32), np.array([1]))
    model = InfluencePPO(
        "MlpPolicy",
        "CartPole-v1",
        filter_fraction=0.5,
        filter_mode="all",
        influence_objective=objective,
        influence_chunk_size=7,
        **KW,
    )
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = InfluencePPO.load(tmp_path / "model.zip", env=make_vec_env("CartPole-v1"))
    assert (loaded.filter_fraction, loaded.filter_mode, loaded.influence_chunk_size) == (0.5, "all", 7)
    assert isinstance(loaded.influence_objective, ActionObjective)
    np.testing.assert_array_equal(loaded.influence_objective.actions, [1])
    assert loaded.last_influence is None  # the report of an old buffer is not saved
    assert isinstance(loaded.rollout_buffer, FilteredRolloutBuffer)
    _same_policy(model, loaded)
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.last_influence is not None and loaded.last_influence.n_dropped > 0


def test_default_objective_is_derived_after_loading(tmp_path):
    # influence_objective=None is saved as None: a loaded default model scores along the centred objective, and one
    # given an explicit objective keeps it
    model = InfluencePPO("MlpPolicy", "CartPole-v1", **KW)
    model.save(tmp_path / "default.zip")
    loaded = InfluencePPO.load(tmp_path / "default.zip")
    assert loaded.influence_objective is None and loaded.objective.center is True
    InfluencePPO("MlpPolicy", "CartPole-v1", influence_objective=ReturnObjective(), **KW).save(tmp_path / "plain.zip")
    assert InfluencePPO.load(tmp_path / "plain.zip").objective.center is False


def test_ppo_loads_an_influence_ppo_zip(tmp_path):
    model = InfluencePPO("MlpPolicy", "CartPole-v1", **KW)
    model.learn(64)
    model.save(tmp_path / "iif.zip")
    loaded = PPO.load(tmp_path / "iif.zip", env=make_vec_env("CartPole-v1"))
    _same_policy(model, loaded)
    obs = np.zeros((1, 4), dtype=np.float32)
    assert loaded.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]
    loaded.learn(64)  # PPO's own train() on the (unfiltered) buffer


def test_influence_ppo_loads_a_ppo_zip_and_continues(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", **KW)
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    loaded = InfluencePPO.load(tmp_path / "ppo.zip", env=make_vec_env("CartPole-v1"), filter_fraction=0.5, filter_mode="all")
    _same_policy(model, loaded)
    assert loaded.filter_fraction == 0.5 and loaded.filter_mode == "all"
    assert isinstance(loaded.rollout_buffer, FilteredRolloutBuffer)
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 128 and loaded.last_influence.n_dropped > 0


def test_loaded_zero_fraction_continues_bit_identically_to_ppo(tmp_path):
    base = PPO("MlpPolicy", "CartPole-v1", **KW)
    base.learn(64)
    base.save(tmp_path / "ppo.zip")
    runs = []
    for cls, kwargs in ((PPO, {}), (InfluencePPO, dict(filter_fraction=0.0))):
        model = cls.load(tmp_path / "ppo.zip", env=make_vec_env("CartPole-v1", seed=1), **kwargs)
        model.set_random_seed(1)
        model.learn(64, reset_num_timesteps=False)
        runs.append(model)
    _same_policy(*runs)


@pytest.mark.parametrize("bad", [dict(filter_fraction=2.0), dict(filter_mode="nope")])
def test_load_rejects_bad_overrides(tmp_path, bad):
    InfluencePPO("MlpPolicy", "CartPole-v1", **KW).save(tmp_path / "m.zip")
    with pytest.raises(ValueError):
        InfluencePPO.load(tmp_path / "m.zip", **bad)
