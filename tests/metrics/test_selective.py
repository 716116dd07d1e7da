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
