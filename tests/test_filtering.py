"""The IIF filter rule and the filtering rollout buffer."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from sb3_influence import FilteredDictRolloutBuffer, FilteredRolloutBuffer, filter_mask
from sb3_influence.filtering import adaptive_filter_mask, n_to_drop, reliability_filter_mask, round_to_minibatches


def test_negative_mode_drops_floor_p_of_negatives():
    scores = np.array([3.0, -1.0, -5.0, 2.0, -2.0, -0.5, 0.0, -4.0])  # 5 negatives
    keep = filter_mask(scores, 0.5, "negative")  # floor(2.5) = 2 lowest: -5 and -4
    np.testing.assert_array_equal(keep, [True, True, False, True, True, True, True, False])
    assert filter_mask(scores, 1.0, "negative").sum() == 3  # every negative dropped, zero kept
    assert filter_mask(scores, 0.0, "negative").all()


def test_all_mode_drops_floor_p_of_all():
    scores = np.array([3.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # no negative record
    assert filter_mask(scores, 0.5, "negative").all()
    keep = filter_mask(scores, 0.25, "all")  # floor(2) lowest: 1 and 2
    np.testing.assert_array_equal(keep, [True, False, False, True, True, True, True, True])


def test_keeps_shape_and_breaks_ties_by_position():
    scores = -np.ones((3, 2))
    keep = filter_mask(scores, 0.5, "negative")
    assert keep.shape == (3, 2)
    np.testing.assert_array_equal(keep.reshape(-1), [False, False, False, True, True, True])


def test_floor_is_robust_to_float_products():
    assert 0.29 * 100 < 29  # the trap
    assert n_to_drop(0.29, 100) == 29
    assert n_to_drop(0.125, 7) == 0
    assert n_to_drop(1.0, 7) == 7


def test_min_keep_bounds_the_drop():
    scores = -np.arange(1.0, 11.0)
    keep = filter_mask(scores, 1.0, "negative", min_keep=4)
    assert keep.sum() == 4
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 1, 2, 3])  # the least harmful ones


def test_random_mode_uses_its_own_rng():
    scores = np.zeros(100)
    state = np.random.get_state()
    a = filter_mask(scores, 0.3, "random", rng=np.random.default_rng(1))
    b = filter_mask(scores, 0.3, "random", rng=np.random.default_rng(1))
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    np.testing.assert_array_equal(a, b)
    assert (~a).sum() == 30


def test_non_finite_scores_keep_everything():
    scores = np.array([-1.0, np.nan, -3.0, 2.0])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        keep = filter_mask(scores, 1.0, "negative")
    assert keep.all()


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="filter_fraction"):
        filter_mask(np.zeros(4), fraction, "negative")


def test_bad_mode():
    with pytest.raises(ValueError, match="filter_mode"):
        filter_mask(np.zeros(4), 0.5, "worst")


def test_adaptive_drops_only_significantly_negative_scores():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    # sigma = 1, confidence 0.95: z = 1.645, so -5 .. -2 are significant
    keep = adaptive_filter_mask(scores, noise_std=1.0, reliability=0.8)
    np.testing.assert_array_equal(np.flatnonzero(~keep), [0, 1, 2, 3])
    # a stricter test, or more noise, drops fewer: z = 3.09, or z * sigma = 3.29 with sigma = 2: only -5 and -4
    assert (~adaptive_filter_mask(scores, 1.0, 0.8, confidence=0.999)).sum() == 2
    np.testing.assert_array_equal(np.flatnonzero(~adaptive_filter_mask(scores, 2.0, 0.8)), [0, 1])
    # the cap: floor(p * N_neg) of the 5 negative records
    np.testing.assert_array_equal(np.flatnonzero(~adaptive_filter_mask(scores, 1.0, 0.8, filter_fraction=0.5)), [0, 1])
    # min_keep bounds the drop, and shape is kept
    assert adaptive_filter_mask(scores, 1.0, 0.8, min_keep=8).sum() == 8
    assert adaptive_filter_mask(scores.reshape(5, 2), 1.0, 0.8).shape == (5, 2)


def test_adaptive_drops_nothing_without_reliable_signal():
    scores = np.array([-5.0, -4.0, 1.0, 2.0])
    assert adaptive_filter_mask(scores, 1.0, reliability=-0.2).all()
    assert adaptive_filter_mask(scores, 1.0, reliability=float("nan")).all()
    assert adaptive_filter_mask(scores, 1.0, reliability=0.4, min_reliability=0.5).all()
    assert adaptive_filter_mask(scores, float("nan"), reliability=0.9).all()
    assert adaptive_filter_mask(scores, 1.0, reliability=0.9, filter_fraction=0.0).all()
    # folds in perfect agreement (no noise): every negative record is significant
    np.testing.assert_array_equal(adaptive_filter_mask(scores, 0.0, reliability=1.0), [False, False, True, True])


def test_adaptive_bad_input():
    with pytest.raises(ValueError, match="finite"):
        adaptive_filter_mask(np.array([np.nan, 1.0]), 1.0, 0.5)
    with pytest.raises(ValueError, match="confidence"):
        adaptive_filter_mask(np.zeros(3), 1.0, 0.5, confidence=1.0)
    with pytest.raises(ValueError, match="adaptive_filter_mask"):
        filter_mask(np.zeros(3), 0.5, "adaptive")


def test_reliability_rule_scales_the_papers_fraction_by_the_reliability():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, -1.0, -0.5, -0.25, -0.1, 1.0, 2.0])  # N_neg = 8
    # rho = 1: the paper's rule on these scores, floor(0.5 * 8) = 4 lowest dropped
    np.testing.assert_array_equal(np.flatnonzero(~reliability_filter_mask(scores, 1.0, 0.5)), [0, 1, 2, 3])
    np.testing.assert_array_equal(reliability_filter_mask(scores, 1.0, 0.5), filter_mask(scores, 0.5, "negative"))
    # rho = 0.5: floor(0.5 * 0.5 * 8) = 2; rho above 1 counts as 1
    np.testing.assert_array_equal(np.flatnonzero(~reliability_filter_mask(scores, 0.5, 0.5)), [0, 1])
    assert (~reliability_filter_mask(scores, 1.7, 0.5)).sum() == 4
    assert (~reliability_filter_mask(scores, 1.0, 1.0)).sum() == 8  # never a positive score
    assert (~reliability_filter_mask(scores, 0.3, 0.5)).sum() == 1  # floor(1.2)
    assert reliability_filter_mask(scores, 1.0, 1.0, min_keep=9).sum() == 9
    assert reliability_filter_mask(scores.reshape(5, 2), 1.0).shape == (5, 2)
    # ties are broken by position
    np.testing.assert_array_equal(reliability_filter_mask(np.array([-1.0, -1.0, -1.0, 1.0]), 1.0, 0.5), [0, 1, 1, 1])


def test_reliability_rule_drops_nothing_from_a_noise_ranking():
    scores = np.array([-5.0, -4.0, 1.0, 2.0])
    for reliability in (0.0, -0.3, float("nan")):
        assert reliability_filter_mask(scores, reliability, 1.0).all()
    assert reliability_filter_mask(scores, 0.4, 1.0, min_reliability=0.5).all()
    assert reliability_filter_mask(scores, 1.0, 0.0).all()
    assert reliability_filter_mask(np.array([1.0, 2.0]), 1.0, 1.0).all()  # no negative score


def test_reliability_rule_min_fraction_is_a_floor_on_the_share_dropped():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, -1.0, -0.5, -0.25, -0.1, 1.0, 2.0])  # N_neg = 8
    # max(0.25, 0.5 * clip(rho, 0, 1)) of the 8 negatives: the floor binds at low or negative rho ...
    for rho, dropped in ((0.0, 2), (-0.4, 2), (0.2, 2), (0.75, 3), (1.0, 4)):
        kept = reliability_filter_mask(scores, rho, 0.5, min_reliability=-1.0, min_fraction=0.25)
        np.testing.assert_array_equal(np.flatnonzero(~kept), np.arange(dropped))
    # ... but not below min_reliability, nor with a NaN reliability (a closed gate, an abstention)
    assert reliability_filter_mask(scores, -0.4, 0.5, min_fraction=0.25).all()  # min_reliability 0
    assert reliability_filter_mask(scores, float("nan"), 0.5, min_reliability=-1.0, min_fraction=0.25).all()
    with pytest.raises(ValueError, match="min_fraction"):
        reliability_filter_mask(scores, 1.0, 0.25, min_fraction=0.5)


def test_reliability_rule_bad_input():
    with pytest.raises(ValueError, match="finite"):
        reliability_filter_mask(np.array([np.nan, -1.0]), 0.5)
    with pytest.raises(ValueError, match="filter_fraction"):
        reliability_filter_mask(np.zeros(3), 0.5, 1.5)
    with pytest.raises(ValueError, match="reliability_filter_mask"):
        filter_mask(np.zeros(3), 0.5, "reliability")


def test_round_to_minibatches_by_hand():
    scores = np.arange(10.0) - 5.0  # -5 .. 4, already in rank order
    keep = scores >= -2  # the rule kept 7
    # batch 4: admissible 4, 8 and 10 (all eligible): round up to 8 by bringing back the best dropped record (-3)
    np.testing.assert_array_equal(np.flatnonzero(~round_to_minibatches(keep, scores, 4)), [0, 1])
    # batch 5: 5 and 10 -> 10: nothing is dropped
    assert round_to_minibatches(keep, scores, 5).all()
    # already whole minibatches, keep-all masks, a batch size of None (one batch), too few records: unchanged
    for k, b in ((scores >= -1, 3), (np.ones(10, bool), 4), (keep, None), (keep, 11)):
        np.testing.assert_array_equal(round_to_minibatches(k, scores, b), k)


def test_round_to_minibatches_with_ineligible_records():
    scores = np.array([np.nan, np.nan, np.nan, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])  # 7 eligible of 10
    # nothing dropped by the rule: 7 = 4 + a remainder of 3 >= 4 / 2, so all 7 stay
    keep = np.isfinite(scores)
    np.testing.assert_array_equal(round_to_minibatches(keep, scores, 4), keep)
    # batch 6: 7 = 6 + 1: the remainder of 1 goes (the lowest-scored eligible record)
    np.testing.assert_array_equal(np.flatnonzero(round_to_minibatches(keep, scores, 6)), [4, 5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="non-finite"):
        round_to_minibatches(np.ones(10, bool), scores, 4)


def _filled_buffer(cls=FilteredRolloutBuffer, n_steps=6, n_envs=3):
    obs_space = (
        spaces.Box(-1, 1, (2,)) if cls is not FilteredDictRolloutBuffer else spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
    )
    buffer = cls(n_steps, obs_space, spaces.Discrete(2), device="cpu", n_envs=n_envs)
    for step in range(n_steps):
        # encode (step, env) in the value so the yielded records can be identified
        ids = np.array([step * n_envs + env for env in range(n_envs)], dtype=np.float32)
        obs = np.zeros((n_envs, 2), dtype=np.float32)
        obs = {"x": obs} if cls is FilteredDictRolloutBuffer else obs
        buffer.add(obs, np.zeros((n_envs, 1)), np.zeros(n_envs), np.zeros(n_envs), th.as_tensor(ids), th.zeros(n_envs))
    buffer.compute_returns_and_advantage(th.zeros(n_envs), np.zeros(n_envs))
    return buffer


@pytest.mark.parametrize("cls", [FilteredRolloutBuffer, FilteredDictRolloutBuffer])
def test_buffer_yields_each_kept_record_once(cls):
    buffer = _filled_buffer(cls)
    keep = np.ones((6, 3), dtype=bool)
    keep[[0, 2, 5], [1, 0, 2]] = False
    buffer.set_keep_mask(keep)
    for _ in range(2):  # several epochs (flattened on the first)
        seen = np.concatenate([batch.old_values.numpy() for batch in buffer.get(4)])
        assert sorted(seen.astype(int).tolist()) == sorted(np.flatnonzero(keep.reshape(-1)).tolist())
    sizes = [len(batch.old_values) for batch in buffer.get(4)]
    assert sizes == [4, 4, 4, 3]  # SB3 keeps the last partial minibatch


def test_buffer_without_mask_is_sb3_and_rng_advances_identically():
    ours, theirs = _filled_buffer(), _filled_buffer(RolloutBuffer)
    np.random.seed(0)
    a = [b.old_values.numpy() for b in ours.get(5)]
    np.random.seed(0)
    b = [b.old_values.numpy() for b in theirs.get(5)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # with a mask, the same permutation is drawn: the global RNG ends in the same state
    mask = np.ones((6, 3), dtype=bool)
    mask[0, 0] = False
    ours.set_keep_mask(mask)
    np.random.seed(0)
    list(ours.get(5))
    after_ours = np.random.random()
    np.random.seed(0)
    list(theirs.get(5))
    assert np.random.random() == after_ours


def test_reset_clears_mask_and_bad_masks_raise():
    buffer = _filled_buffer()
    with pytest.raises(ValueError, match="shape"):
        buffer.set_keep_mask(np.ones((3, 6), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        buffer.set_keep_mask(np.ones((6, 3)))
    with pytest.raises(ValueError, match="at least one"):
        buffer.set_keep_mask(np.zeros((6, 3), dtype=bool))
    buffer.set_keep_mask(np.ones((6, 3), dtype=bool))
    buffer.reset()
    assert buffer.keep_mask is None
