"""Selective-prediction metrics against hand-computed values."""

import numpy as np
import pytest

from salesrl_jax.metrics import selective


def test_risk_coverage_keeps_the_most_confident_first():
    coverage, risk = selective.risk_coverage(np.array([0.9, 0.1, 0.5, 0.7]), np.array([0.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.0, 1 / 3, 0.5])
    assert selective.aurc(np.array([0.9, 0.1, 0.5, 0.7]), np.array([0.0, 1.0, 1.0, 0.0])) == pytest.approx(
        (0 + 0 + 1 / 3 + 0.5) / 4)


def test_ties_enter_at_their_mean_loss_so_no_order_flatters_them():
    # one tied group of four: every prefix has the group's mean loss, whatever order the sort left them in
    _, risk = selective.risk_coverage(np.full(4, 0.5), np.array([1.0, 0.0, 0.0, 1.0]))
    np.testing.assert_allclose(risk, 0.5)


def test_optimal_aurc_is_the_floor_and_a_reversed_confidence_the_ceiling():
    rng = np.random.default_rng(0)
    loss = (rng.random(200) < 0.3).astype(float)
    best, worst = selective.optimal_aurc(loss), selective.aurc(loss, loss)  # confidence = loss: errors first
    random = selective.aurc(rng.random(200), loss)
    assert best < random < worst
    assert best == pytest.approx(selective.aurc(-loss, loss))


def test_error_detection_and_separation_auroc():
    confidence = np.array([0.9, 0.8, 0.2, 0.1])
    assert selective.error_detection_auroc(confidence, np.array([0, 0, 1, 1])) == 1.0
    assert selective.error_detection_auroc(confidence, np.array([1, 1, 0, 0])) == 0.0
    assert selective.separation_auroc(np.array([5.0, -3.0, 100.0, 2.0]), np.array([1, 0, 1, 0])) == 1.0


def test_interval_coverage_counts_the_ends_as_inside():
    assert selective.interval_coverage(np.array([0.1, 0.2, 0.5]), np.array([0.3, 0.4, 0.6]),
                                       np.array([0.3, 0.5, 0.5])) == pytest.approx(2 / 3)


def test_the_valid_coverage_range_holds_95_percent_of_split_conformal_runs_and_binomial_alone_does_not():
    """Split-conformal on exchangeable scores: the k-th smallest of m calibration scores, k = ceil((m + 1) 0.9),
    covers a share of n test scores that falls in the range in about 95% of runs; the test sample's binomial
    noise alone (m None) leaves out the calibration set's and is too narrow; a quantile at 0.8 falls outside."""
    rng = np.random.default_rng(0)
    m, n, level, runs = 300, 545, 0.9, 2000
    k = int(np.ceil((m + 1) * level))
    calibration, test = rng.random((runs, m)), rng.random((runs, n))
    quantile = np.sort(calibration, axis=1)[:, k - 1]
    coverage = np.mean(test <= quantile[:, None], axis=1)
    low, high = selective.valid_coverage_range(n, level, m)
    inside = np.mean((coverage >= low) & (coverage <= high))
    assert 0.93 <= inside <= 0.97, inside
    b_low, b_high = selective.valid_coverage_range(n, level)
    assert low < b_low < level < b_high < high
    assert np.mean((coverage >= b_low) & (coverage <= b_high)) < 0.88
    broken = np.mean(test <= np.sort(calibration, axis=1)[:, int(np.ceil((m + 1) * 0.8)) - 1][:, None], axis=1)
    assert np.mean((broken >= low) & (broken <= high)) < 0.05
    assert selective.valid_coverage_range(n, level, 5) == (1.0, 1.0)  # too few: the interval is [0, 1]
