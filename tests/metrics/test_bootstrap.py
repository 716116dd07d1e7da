"""Bootstrap intervals: they cover the truth, shrink with n, and pair the resamples."""

import numpy as np
import pytest

from salesrl_jax.metrics import brier, expected_calibration_error, roc_auc
from salesrl_jax.metrics.bootstrap import (
    bootstrap_interval,
    calibrated_null,
    counted_auc,
    estimate,
    paired_difference,
    paired_mean_auc_difference,
    resampled_auc,
    resampled_ece,
)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(float)


def test_interval_brackets_the_estimate_and_shrinks_with_n():
    p, y = _data(400)
    lo, hi = bootstrap_interval(roc_auc, p, y, rounds=300)
    assert lo < roc_auc(p, y) < hi
    p4, y4 = _data(1600)
    lo4, hi4 = bootstrap_interval(roc_auc, p4, y4, rounds=300)
    assert (hi4 - lo4) < 0.7 * (hi - lo)
    assert np.isnan(bootstrap_interval(brier, p[:1], y[:1])[0])


def test_paired_difference_is_tighter_than_separate_intervals_and_zero_for_identical_methods():
    p, y = _data(500, seed=1)
    noisy = np.clip(p + np.random.default_rng(2).normal(0, 0.05, len(p)), 0, 1)
    diff, lo, hi = paired_difference(roc_auc, p, noisy, y, rounds=300)
    assert lo <= diff <= hi and diff == roc_auc(p, y) - roc_auc(noisy, y)
    a_lo, a_hi = bootstrap_interval(roc_auc, p, y, rounds=300)
    assert hi - lo < (a_hi - a_lo) / 2  # the methods err alike, so their difference is sure
    assert paired_difference(roc_auc, p, p, y, rounds=50) == (0.0, 0.0, 0.0)


def test_the_calibrated_null_is_the_ece_floor_of_a_calibrated_predictor_and_shrinks_with_n():
    p, y = _data(1000, seed=3)  # outcomes drawn from p: p is calibrated
    median, high = calibrated_null(expected_calibration_error, p, rounds=300)
    assert 0 < median < high < 0.06
    # The calibrated predictor's own ECE is one draw of that null: below its 99.9th percentile.
    assert expected_calibration_error(p, y) < calibrated_null(expected_calibration_error, p, rounds=300,
                                                              level=0.999)[1]
    # A miscalibrated predictor reads far above the floor; four times the data halves the floor.
    assert expected_calibration_error(np.clip(p + 0.15, 0, 1), y) > 2 * high
    median4, _ = calibrated_null(expected_calibration_error, np.tile(p, 4), rounds=100)
    assert median4 < 0.6 * median


def test_resampled_auc_is_the_auc_of_each_resample_ties_and_one_class_resamples_included():
    rng = np.random.default_rng(4)
    for n, decimals in ((300, 1), (300, 6), (4, 2)):  # coarse scores (many ties), fine scores, tiny n (one class)
        p, y = _data(n, seed=n + decimals)
        p = np.round(p, decimals)
        resamples = rng.integers(0, n, size=(250, n))
        expected = np.array([roc_auc(p[i], y[i]) for i in resamples])
        got = resampled_auc(p, y, resamples, block=64)  # several blocks, the last one partial
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=0, atol=1e-12)
    assert np.isnan(resampled_auc(p, y, resamples)).any()  # n = 4 draws one-class resamples
    with pytest.raises(ValueError, match="within"):
        resampled_auc(np.array([0.2, 1.5]), np.array([0.0, 1.0]), np.zeros((2, 2), int))


def test_the_ece_of_every_resample_and_of_every_drawn_outcome_at_once_is_the_ece_one_at_a_time():
    # The bootstrap and the calibrated null compute ECE for all resamples (or all draws) in blocks; a metric that
    # is not `expected_calibration_error` itself (the lambda) takes the one-at-a-time path: the two agree.
    def one_at_a_time(p, y):
        return expected_calibration_error(p, y)

    rng = np.random.default_rng(7)
    for n, decimals in ((300, 6), (300, 1), (3, 2)):  # fine scores, scores on the bin edges, tiny n
        p, y = _data(n, seed=n + decimals)
        p = np.round(p, decimals)
        resamples = rng.integers(0, n, size=(250, n))
        expected = np.array([expected_calibration_error(p[i], y[i]) for i in resamples])
        np.testing.assert_allclose(resampled_ece(p, y, resamples, block=64), expected, rtol=0, atol=1e-12)
        repeated = np.stack([p, np.clip(p + 0.05, 0, 1)])  # [R, n]: the mean over repetitions
        for probs in (p, repeated):
            for fast, slow in ((bootstrap_interval(expected_calibration_error, probs, y, rounds=300),
                                bootstrap_interval(one_at_a_time, probs, y, rounds=300)),
                               (calibrated_null(expected_calibration_error, probs, rounds=300),
                                calibrated_null(one_at_a_time, probs, rounds=300)),
                               (paired_difference(expected_calibration_error, probs, p, y, rounds=300),
                                paired_difference(one_at_a_time, probs, p, y, rounds=300))):
                np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="within"):
        resampled_ece(np.array([0.2, 1.5]), np.array([0.0, 1.0]), np.zeros((2, 2), int))


def test_repeated_cross_validation_scores_the_mean_over_repetitions_on_the_same_resampled_conversations():
    p, y = _data(400, seed=5)
    other = np.clip(p + np.random.default_rng(6).normal(0, 0.1, len(p)), 0, 1)  # another fold assignment's
    both = np.stack([p, other])
    assert estimate(roc_auc, both, y) == pytest.approx((roc_auc(p, y) + roc_auc(other, y)) / 2)
    assert estimate(brier, p, y) == brier(p, y)
    # Copies of one repetition are that repetition: the same resamples, the same values.
    assert bootstrap_interval(roc_auc, np.stack([p, p]), y, rounds=200) == bootstrap_interval(roc_auc, p, y,
                                                                                              rounds=200)
    assert calibrated_null(expected_calibration_error, np.stack([p, p]), rounds=50) == calibrated_null(
        expected_calibration_error, p, rounds=50)
    # The interval of the mean lies between the repetitions' own (resamples shared, so it is no wider than both).
    lo, hi = bootstrap_interval(roc_auc, both, y, rounds=300)
    alone = [bootstrap_interval(roc_auc, x, y, rounds=300) for x in (p, other)]
    assert min(a[0] for a in alone) <= lo <= max(a[0] for a in alone)
    assert min(a[1] for a in alone) <= hi <= max(a[1] for a in alone)
    diff, d_lo, d_hi = paired_difference(roc_auc, both, np.stack([other, p]), y, rounds=100)
    assert diff == pytest.approx(0.0, abs=1e-12) and d_lo <= 0 <= d_hi  # the same two models, swapped
    with pytest.raises(ValueError, match="repeats, n"):
        bootstrap_interval(roc_auc, both[:, :10], y)


def test_a_mean_over_points_resamples_each_conversation_once_for_every_point():
    p, y = _data(300, seed=7)
    q = np.clip(p + np.random.default_rng(8).normal(0, 0.2, len(p)), 0, 1)
    ids = np.array([f"c{i:04d}" for i in range(len(p))])  # sorted: the draws are bootstrap_interval's own
    # One point: the paired difference itself, interval included.
    assert paired_mean_auc_difference([(ids, p, q, y)], rounds=300) == pytest.approx(
        paired_difference(roc_auc, p, q, y, rounds=300))
    # Two points sharing conversations (the second a later turn: a subset): the mean of the two differences; a
    # point whose copy of a conversation moved to another row order reads the same.
    later = np.sort(np.random.default_rng(9).choice(len(p), 120, replace=False))
    shuffled = np.random.default_rng(10).permutation(later)
    points = [(ids, p, q, y), (ids[later], q[later], p[later], y[later])]
    diff, lo, hi = paired_mean_auc_difference(points, rounds=300)
    assert diff == pytest.approx((roc_auc(p, y) - roc_auc(q, y) + roc_auc(q[later], y[later])
                                  - roc_auc(p[later], y[later])) / 2) and lo <= diff <= hi
    moved = [(ids, p, q, y), (ids[shuffled], q[shuffled], p[shuffled], y[shuffled])]
    assert paired_mean_auc_difference(moved, rounds=300) == pytest.approx((diff, lo, hi))
    # Counts are resamples: counted_auc of a resample's counts is its AUC.
    draw = np.random.default_rng(11).integers(0, len(p), (5, len(p)))
    counts = np.stack([np.bincount(d, minlength=len(p)) for d in draw])
    np.testing.assert_allclose(counted_auc(p, y, counts), [roc_auc(p[d], y[d]) for d in draw], atol=1e-12)
    with pytest.raises(ValueError, match="twice"):
        paired_mean_auc_difference([(np.array(["a", "a"]), p[:2], q[:2], y[:2])])
