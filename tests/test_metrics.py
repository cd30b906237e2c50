"""Hand-checked values for the SE / RT metrics (docs/metrics.md) and their aggregation over seeds."""

import math

import numpy as np
import pytest

from sb3_influence.benchmark.metrics import (
    Aggregate,
    SeedMetrics,
    aggregate,
    compute_metrics,
    first_reach,
    format_pct,
    new_best_levels,
    rt_peak,
    sample_efficiency,
    se_ave,
    se_band,
    se_peak,
)

# PPO new bests: 0 @1, 1 @2, 2 @4, 3 @5.  IIF first reaches: 0 @1, 1 @1, 2 @2, 3 @3.
# SE per level: 1-1/1 = 0, 1-1/2 = 0.5, 1-2/4 = 0.5, 1-3/5 = 0.4  ->  SE_ave = 1.4/4 = 0.35, SE_peak = 0.4.
# Seconds: IIF reaches PPO's peak (3) at iteration 3, t = 2.0; PPO's whole run takes 5.0 -> RT_peak = 1 - 2/5 = 0.6.
PPO = [0.0, 1.0, 1.0, 2.0, 3.0]
IIF = [1.0, 2.0, 3.0, 3.0, 3.0]
PPO_SECONDS = [1.0, 2.0, 3.0, 4.0, 5.0]
IIF_SECONDS = [1.0, 1.5, 2.0, 2.5, 3.0]


def test_first_reach():
    assert first_reach(PPO, 0.0) == 1
    assert first_reach(PPO, 1.0) == 2  # reaching the level exactly counts
    assert first_reach(PPO, 1.5) == 4
    assert first_reach(PPO, 3.0) == 5
    assert first_reach(PPO, 3.0001) is None
    assert first_reach(np.array([-5, -3, -4]), -4) == 2  # integer arrays, negative returns


def test_new_best_levels():
    np.testing.assert_array_equal(new_best_levels(PPO), [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(new_best_levels([5.0, 1.0, 2.0]), [5.0])  # the first point is the first best
    np.testing.assert_array_equal(new_best_levels([1.0, 3.0, 2.0, 3.0, 4.0]), [1.0, 3.0, 4.0])


def test_hand_computed_example():
    assert sample_efficiency(PPO, IIF, 2.0) == pytest.approx(0.5)
    assert se_ave(PPO, IIF) == pytest.approx(0.35)
    assert se_peak(PPO, IIF) == pytest.approx(0.4)
    assert rt_peak(PPO, IIF, IIF_SECONDS, PPO_SECONDS) == pytest.approx(0.6)
    m = compute_metrics(PPO, IIF, ppo_seconds=PPO_SECONDS, iif_seconds=IIF_SECONDS)
    assert isinstance(m, SeedMetrics)
    assert (m.se_ave, m.se_peak, m.rt_peak) == pytest.approx((0.35, 0.4, 0.6))
    assert compute_metrics(PPO, IIF).rt_peak is None


def test_ties_reaching_exactly_counts():
    # IIF hits PPO's levels exactly (not above them). PPO new bests: 0 @1, 1 @2, 2 @3; IIF reaches 0 @1, 1 @1, 2 @2.
    # SE = 1-1/1 = 0, 1-1/2 = 0.5, 1-2/3 = 1/3 -> SE_ave = (0 + 0.5 + 1/3)/3 = 5/18, SE_peak = 1/3.
    ppo = [0.0, 1.0, 2.0]
    iif = [1.0, 2.0, 2.0]
    assert se_ave(ppo, iif) == pytest.approx(5 / 18)
    assert se_peak(ppo, iif) == pytest.approx(1 / 3)


def test_identical_curves_give_zero():
    curve = [-200.0, -150.0, -160.0, -90.0, -90.0, 10.0, 5.0]
    seconds = np.cumsum(np.full(len(curve), 2.0))
    m = compute_metrics(curve, curve, ppo_seconds=seconds, iif_seconds=seconds)
    assert m == SeedMetrics(se_ave=0.0, se_peak=0.0, rt_peak=pytest.approx(1 - 12 / 14))
    # RT_peak is 0 for identical runs only when the peak is at the last iteration.
    assert rt_peak([1.0, 2.0], [1.0, 2.0], [3.0, 6.0], [3.0, 6.0]) == 0.0


def test_never_reached_penalised():
    # PPO new bests: 0 @1, 2 @2, 4 @3 (T_PPO = 3).  IIF (T_IIF = 4): 0 @1, 2 @3, 4 never -> m_IIF = T_IIF + 1 = 5.
    # SE: 1-1/1 = 0, 1-3/2 = -0.5, 1-5/3 = -2/3 -> SE_ave = -7/18, SE_peak = -2/3.
    # RT: IIF run extrapolated one mean iteration: 4.0 * 5/4 = 5.0; PPO total 6.0 -> RT_peak = 1 - 5/6 = 1/6.
    ppo, iif = [0.0, 2.0, 4.0], [0.0, 1.0, 2.0, 3.0]
    ppo_s, iif_s = [2.0, 4.0, 6.0], [1.0, 2.0, 3.0, 4.0]
    assert sample_efficiency(ppo, iif, 4.0) == pytest.approx(-2 / 3)
    assert se_ave(ppo, iif) == pytest.approx(-7 / 18)
    assert se_peak(ppo, iif) == pytest.approx(-2 / 3)
    assert rt_peak(ppo, iif, iif_s, ppo_s) == pytest.approx(1 / 6)
    m = compute_metrics(ppo, iif, ppo_seconds=ppo_s, iif_seconds=iif_s)
    assert (m.se_ave, m.se_peak, m.rt_peak) == pytest.approx((-7 / 18, -2 / 3, 1 / 6))


def test_never_reached_nan():
    ppo, iif = [0.0, 2.0, 4.0], [0.0, 1.0, 2.0, 3.0]
    assert math.isnan(sample_efficiency(ppo, iif, 4.0, never_reached="nan"))
    assert math.isnan(se_ave(ppo, iif, never_reached="nan"))
    assert math.isnan(se_peak(ppo, iif, never_reached="nan"))
    assert math.isnan(rt_peak(ppo, iif, [1, 2, 3, 4], [2, 4, 6], never_reached="nan"))
    # Levels IIF does reach are unaffected by the convention.
    assert sample_efficiency(ppo, iif, 2.0, never_reached="nan") == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="never_reached"):
        se_ave(ppo, iif, never_reached="infinity")  # type: ignore[arg-type]


def test_different_lengths_and_slower_iif():
    # IIF is slower: PPO levels 1 @1, 3 @2; IIF reaches 1 @2 and 3 @4 -> SE = 1-2/1 = -1, 1-4/2 = -1.
    ppo, iif = [1.0, 3.0], [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert se_ave(ppo, iif) == pytest.approx(-1.0)
    assert se_peak(ppo, iif) == pytest.approx(-1.0)
    # IIF reaches 3 at iteration 4, t = 8; PPO's run takes 4 -> RT_peak = 1 - 8/4 = -1.
    assert rt_peak(ppo, iif, [2, 4, 6, 8, 10, 12], [2, 4]) == pytest.approx(-1.0)


def test_se_band_keeps_only_the_levels_inside_the_band():
    ppo = [0.0, 0.1, 0.5, 0.9, 1.0]  # new bests 0, .1, .5, .9, 1 at iterations 1..5 (range 0..1)
    iif = [0.0, 0.5, 0.9, 1.0, 1.0]  # reaches .1 and .5 at 2, .9 at 3, 1 at 4
    # Band [0.1, 0.9] keeps levels .1, .5, .9: SE = 1 - 2/2, 1 - 2/3, 1 - 3/4.
    expected = np.mean([0.0, 1 - 2 / 3, 1 - 3 / 4])
    assert se_band(ppo, iif) == pytest.approx(expected)
    # The full band is SE_ave; levels .0 (SE 0) and 1.0 (1 - 4/5) come back in.
    assert se_band(ppo, iif, 0.0, 1.0) == pytest.approx(se_ave(ppo, iif))
    # A band between two levels has none: nan. A flat PPO curve: nan.
    assert math.isnan(se_band(ppo, iif, 0.2, 0.4))
    assert math.isnan(se_band([1.0, 1.0], iif))
    # Levels are relative to PPO's range: shifting both curves changes nothing.
    assert se_band([v - 7 for v in ppo], [v - 7 for v in iif]) == pytest.approx(expected)
    # Never reached inside the band: penalised with T_IIF + 1, or nan.
    assert se_band(ppo, [0.0, 0.2, 0.2]) == pytest.approx(np.mean([1 - 2 / 2, 1 - 4 / 3, 1 - 4 / 4]))
    assert math.isnan(se_band(ppo, [0.0, 0.2, 0.2], never_reached="nan"))
    with pytest.raises(ValueError, match="low <= high"):
        se_band(ppo, iif, 0.9, 0.1)


def test_aggregate_known_values():
    agg = aggregate([0.1, 0.2, 0.3, 0.4])
    # mean 0.25; sample std (ddof=1) = sqrt(0.05/3) = 0.1290994; stderr = 0.1290994 / 2 = 0.0645497.
    assert isinstance(agg, Aggregate)
    assert agg.n == 4
    assert agg.mean == pytest.approx(0.25)
    assert agg.stderr == pytest.approx(math.sqrt(0.05 / 3) / 2)
    assert format_pct(agg) == "25.0±6.5%"
    assert format_pct(Aggregate(mean=0.34, stderr=0.02, ci_low=0.3, ci_high=0.38, n=5)) == "34.0±2.0%"


def test_aggregate_single_and_constant():
    one = aggregate([0.42])
    assert (one.mean, one.stderr, one.ci_low, one.ci_high, one.n) == (0.42, 0.0, 0.42, 0.42, 1)
    const = aggregate([0.3] * 5)
    assert const.stderr == 0.0
    assert const.ci_low == const.ci_high == const.mean


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = [0.34, 0.31, 0.38, 0.29, 0.36]
    a = aggregate(values, n_bootstrap=2000, seed=123)
    b = aggregate(values, n_bootstrap=2000, seed=123)
    assert a == b
    assert min(values) <= a.ci_low <= a.mean <= a.ci_high <= max(values)
    assert a.ci_low < a.ci_high
    wider = aggregate(values, n_bootstrap=2000, confidence=0.99, seed=123)
    assert wider.ci_low <= a.ci_low and wider.ci_high >= a.ci_high
    c = aggregate(values, n_bootstrap=2000, seed=124)
    assert (c.mean, c.stderr) == (a.mean, a.stderr)
    assert (c.ci_low, c.ci_high) != (a.ci_low, a.ci_high)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: se_ave([], IIF), "empty"),
        (lambda: se_ave(PPO, []), "empty"),
        (lambda: se_peak([0.0, float("nan")], IIF), "non-finite"),
        (lambda: se_peak(PPO, [0.0, float("inf")]), "non-finite"),
        (lambda: first_reach([[0.0, 1.0]], 0.5), "1-D"),
        (lambda: se_ave(np.zeros((2, 3)), IIF), "1-D"),
        (lambda: first_reach(PPO, float("nan")), "level"),
        (lambda: first_reach(["a", "b"], 0.0), "numbers"),
        (lambda: sample_efficiency(PPO, IIF, 10.0), "PPO never reaches"),
        (lambda: rt_peak(PPO, IIF, IIF_SECONDS[:-1], PPO_SECONDS), "length"),
        (lambda: rt_peak(PPO, IIF, IIF_SECONDS, [*PPO_SECONDS, 6.0]), "length"),
        (lambda: rt_peak(PPO, IIF, [1.0, 3.0, 2.0, 4.0, 5.0], PPO_SECONDS), "non-decreasing"),
        (lambda: rt_peak(PPO, IIF, IIF_SECONDS, [1.0, 2.0, 3.0, 4.0, 3.5]), "non-decreasing"),
        (lambda: rt_peak(PPO, IIF, IIF_SECONDS, [-1.0, 2.0, 3.0, 4.0, 5.0]), "non-negative"),
        (lambda: rt_peak(PPO, IIF, IIF_SECONDS, [0.0] * 5), "positive"),
        (lambda: rt_peak(PPO, IIF, [0.0, float("nan"), 2.0, 3.0, 4.0], PPO_SECONDS), "non-finite"),
        (lambda: compute_metrics(PPO, IIF, ppo_seconds=PPO_SECONDS), "both"),
        (lambda: compute_metrics(PPO, IIF, iif_seconds=IIF_SECONDS), "both"),
        (lambda: aggregate([]), "empty"),
        (lambda: aggregate([0.1, float("nan")]), "non-finite"),
        (lambda: aggregate([[0.1, 0.2]]), "1-D"),
        (lambda: aggregate([0.1, 0.2], n_bootstrap=0), "n_bootstrap"),
        (lambda: aggregate([0.1, 0.2], confidence=1.0), "confidence"),
        (lambda: aggregate([0.1, 0.2], confidence=0.0), "confidence"),
    ],
)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
