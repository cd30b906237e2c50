"""The pure diagnostics maths: Monte-Carlo advantages, NaN-safe Spearman, kNN roughness, embeddings, statistics."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_influence.diagnostics import (
    discounted_returns_to_go,
    has_discrete_observations,
    knn_graph,
    monte_carlo_advantages,
    policy_embeddings,
    roughness,
    score_statistics,
    spearman,
)
from sb3_influence.records import RolloutRecords


def _records(obs, actions, rewards, starts, returns=None, values=None, n_envs=1):
    n = len(rewards)
    zeros = np.zeros(n, dtype=np.float32)
    return RolloutRecords(
        observations=np.asarray(obs).reshape(n, -1),
        actions=np.asarray(actions, dtype=np.float32).reshape(n, 1),
        log_probs=zeros,
        values=zeros if values is None else np.asarray(values, dtype=np.float32),
        advantages=zeros,
        returns=zeros if returns is None else np.asarray(returns, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float32),
        episode_starts=np.asarray(starts, dtype=np.float32),
        n_steps=n // n_envs,
        n_envs=n_envs,
    )


# One env, gamma 0.5: episode A = steps 0-2 (complete), episode B = steps 3-5 (cut by the buffer end).
OBS = [0, 1, 0, 0, 1, 0]
ACTIONS = [0, 1, 1, 0, 0, 1]
REWARDS = [0, 1, 2, 1, 0, 3]
STARTS = [1, 0, 0, 1, 0, 0]
RETURNS = [0, 0, 0, 0, 0, 4]  # only the last one matters: the bootstrap target of the buffer's last step


def test_returns_to_go_bootstrap_and_drop():
    records = _records(OBS, ACTIONS, REWARDS, STARTS, RETURNS)
    # A: G2 = 2, G1 = 1 + .5 * 2 = 2, G0 = 0 + .5 * 2 = 1; B bootstrapped: G5 = R5 = 4, G4 = 2, G3 = 2
    np.testing.assert_allclose(discounted_returns_to_go(records, 0.5), [1, 2, 2, 2, 2, 4])
    np.testing.assert_allclose(discounted_returns_to_go(records, 0.5, "drop"), [1, 2, 2, np.nan, np.nan, np.nan])
    with pytest.raises(ValueError, match="truncation"):
        discounted_returns_to_go(records, 0.5, "clip")  # type: ignore[arg-type]


def test_returns_to_go_step_major_two_envs():
    # (n_steps=3, n_envs=2) flattened step-major: env 0 = [1, 1, 1] one episode, env 1 = [1, 2 | 3] two episodes
    rewards = np.array([[1, 1], [1, 2], [1, 3]]).reshape(-1)
    starts = np.array([[1, 1], [0, 0], [0, 1]]).reshape(-1)
    returns = np.array([[0, 0], [0, 0], [10, 5]]).reshape(-1)
    records = _records(np.zeros(6), np.zeros(6), rewards, starts, returns, n_envs=2)
    g = discounted_returns_to_go(records, 0.9).reshape(3, 2)
    np.testing.assert_allclose(g[:, 0], [1 + 0.9 * (1 + 0.9 * 10), 1 + 0.9 * 10, 10])
    np.testing.assert_allclose(g[:, 1], [1 + 0.9 * 2, 2, 5])
    g = discounted_returns_to_go(records, 0.9, "drop").reshape(3, 2)
    assert np.isnan(g[:, 0]).all() and np.isnan(g[2, 1])
    np.testing.assert_allclose(g[:2, 1], [1 + 0.9 * 2, 2])


def test_monte_carlo_advantages_exact_by_hand():
    records = _records(OBS, ACTIONS, REWARDS, STARTS, RETURNS)
    assert has_discrete_observations(records.observations)
    # G = [1, 2, 2, 2, 2, 4]; mean G(s=0) = (1+2+2+4)/4 = 2.25, mean G(s=1) = 2;
    # (0,0): (1+2)/2 = 1.5, (0,1): (2+4)/2 = 3, (1,1): 2, (1,0): 2
    expected = [-0.75, 0.0, 0.75, -0.75, 0.0, 0.75]
    np.testing.assert_allclose(monte_carlo_advantages(records, 0.5), expected)
    np.testing.assert_allclose(monte_carlo_advantages(records, 0.5, method="exact"), expected)
    # complete suffixes only: s=0 -> records 0, 2 (G 1, 2); s=1 -> record 1
    dropped = monte_carlo_advantages(records, 0.5, truncation="drop")
    np.testing.assert_allclose(dropped, [-0.5, 0.0, 0.5, np.nan, np.nan, np.nan])


def test_monte_carlo_advantages_baseline_for_continuous_observations():
    values = [0.5, 1.0, 1.5, 0.0, 0.5, 1.0]
    records = _records(np.asarray(OBS, dtype=np.float32) + 0.1, ACTIONS, REWARDS, STARTS, RETURNS, values)
    assert not has_discrete_observations(records.observations)
    g = np.array([1, 2, 2, 2, 2, 4], dtype=np.float64)
    np.testing.assert_allclose(monte_carlo_advantages(records, 0.5), g - values, rtol=1e-6)
    np.testing.assert_allclose(monte_carlo_advantages(records, 0.5, method="baseline"), g - values, rtol=1e-6)
    with pytest.raises(ValueError, match="method"):
        monte_carlo_advantages(records, 0.5, method="knn")  # type: ignore[arg-type]


def test_monte_carlo_advantages_dict_observations_group_on_all_keys():
    n = 4
    obs = {"a": np.array([[0], [0], [0], [0]]), "b": np.array([[1], [2], [1], [2]])}
    records = _records(np.zeros(n), [0, 0, 1, 1], [1, 2, 3, 4], [1, 1, 1, 1], [0, 0, 0, 4])
    records = RolloutRecords(**{**records.__dict__, "observations": obs})
    # every record is its own episode: G = r except the last (bootstrapped to R = 4); states (0,1): G 1, 3; (0,2): 2, 4
    np.testing.assert_allclose(monte_carlo_advantages(records, 0.9), [-1, -1, 1, 1])


def test_spearman_nan_safe():
    x = np.arange(10.0)
    assert spearman(x, 2 * x + 1) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(10)))
    assert math.isnan(spearman(np.ones(10), x))
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([], []))
    y = x.copy()
    y[3] = np.nan
    x_inf = x.copy()
    x_inf[5] = np.inf
    assert spearman(x_inf, y) == pytest.approx(1.0)  # the two bad pairs are left out
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = a[:10]  # some ties
    a[20:25] = 0.0
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    with pytest.raises(ValueError):
        spearman(x, x[:3])


def test_roughness_by_hand_k1():
    # nodes: the three positive records at 0, 1, 3 (the negative one at 10 is not in the graph)
    scores = np.array([2.0, 1.0, 4.0, -5.0])
    emb = np.array([[0.0], [1.0], [3.0], [10.0]])
    # I~ = [.5, .25, 1]; kNN(k=1): 0->1 (d 1), 1->0 (d 1), 2->1 (d 2); sigma = median(1, 1, 2) = 1
    # symmetric edges: (0,1) d 1, (1,2) d 2
    w01, w12 = math.exp(-1.0), math.exp(-4.0)
    expected = (w01 * 0.25**2 + w12 * 0.75**2) / (w01 + w12)
    assert roughness(scores, emb, k=1) == pytest.approx(expected)


def test_roughness_by_hand_k2():
    scores = np.array([2.0, 1.0, 4.0, -5.0])
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.5, 0.0]])
    # kNN distances: node 0: 1, 3; node 1: 1, 2; node 2: 2, 3 -> sigma = median(1, 3, 1, 2, 2, 3) = 2
    w01, w02, w12 = math.exp(-1 / 4), math.exp(-9 / 4), math.exp(-4 / 4)
    expected = (w01 * 0.25**2 + w02 * 0.5**2 + w12 * 0.75**2) / (w01 + w02 + w12)
    assert roughness(scores, emb, k=2) == pytest.approx(expected)
    assert roughness(scores, emb, k=50) == pytest.approx(expected)  # k is capped at m - 1


def test_roughness_edge_cases():
    emb = np.arange(5.0).reshape(5, 1)
    assert math.isnan(roughness(np.array([1.0, -1, -1, -1, -1]), emb))  # one positive record: no graph
    assert math.isnan(roughness(np.array([np.nan, np.nan, 1.0, -1, 0]), emb))
    assert roughness(np.full(5, 3.0), emb, k=2) == 0.0  # constant scores are perfectly smooth
    # duplicate states: median kNN distance 0 -> sigma = median of the positive distances; all zero -> weights 1
    dup = np.array([[0.0], [0.0], [0.0], [0.0]])
    assert roughness(np.array([1.0, 2.0, 3.0, 4.0]), dup, k=1) >= 0.0
    value = roughness(np.array([1.0, 2.0, 3.0, 4.0]), np.array([[0.0], [0.0], [0.0], [5.0]]), k=1)
    assert 0.0 <= value < 1.0
    rng = np.random.default_rng(1)
    assert 0.0 <= roughness(rng.normal(size=200), rng.normal(size=(200, 3)), k=5) < 1.0
    with pytest.raises(ValueError):
        roughness(np.ones(3), np.ones((4, 1)))


def test_knn_graph_matches_brute_force():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(37, 4))
    neighbours, distances = knn_graph(points, 3, chunk_size=8)
    full = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(neighbours, np.argsort(full, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :3])


def test_score_statistics():
    scores = np.array([[-2.0, 1.0], [3.0, -0.5]])
    advantages = np.array([[-1.0, 0.5], [2.0, 1.0]])
    kept = np.array([[False, True], [True, True]])
    stats = score_statistics(scores, advantages, kept, mc_advantages=np.array([[1.0, 1.0], [1.0, np.nan]]))
    assert stats["score_mean"] == pytest.approx(0.375)
    assert stats["negative_fraction"] == 0.5
    assert stats["dropped"] == 1 and stats["kept_fraction"] == 0.75 and stats["nonfinite"] == 0
    assert stats["spearman_advantage"] == pytest.approx(spearmanr(scores.ravel(), advantages.ravel()).statistic)
    assert -1 <= stats["spearman_abs_advantage"] <= 1
    assert -1 <= stats["spearman_mc_product"] <= 1
    assert stats["mc_sign_agreement"] == pytest.approx(2 / 3)
    bad = score_statistics(np.array([1.0, np.nan, -1.0]), np.array([1.0, 2.0, 3.0]))
    assert bad["nonfinite"] == 1 and bad["negative_fraction"] == 0.5
    assert "spearman_advantage" not in bad  # correlations are skipped when a score is not finite


def test_policy_embeddings_kinds():
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), n_steps=16, policy_kwargs=dict(net_arch=[8]))
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model.policy.set_training_mode(True)
    assert policy_embeddings(model.policy, obs).shape == (5, 8)
    assert policy_embeddings(model.policy, obs, "features").shape == (5, 4)
    np.testing.assert_allclose(policy_embeddings(model.policy, obs, "observation", chunk_size=2), obs, rtol=1e-6)
    assert model.policy.training  # mode restored
    with pytest.raises(ValueError):
        policy_embeddings(model.policy, obs, "pixels")  # type: ignore[arg-type]
