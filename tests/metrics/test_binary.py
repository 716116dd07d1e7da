"""Metrics against hand-computed values."""

import numpy as np
import pytest

from salesrl_jax import metrics


def test_auc_hand_computed_with_ties():
    probs = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    labels = np.array([0, 0, 1, 1, 1])
    # positive-negative pairs: (0.35>0.1) (0.35<0.4) (0.8>both) (0.4>0.1, 0.4=0.4 -> half) = 1+0+2+1.5 = 4.5 of 6
    assert metrics.roc_auc(probs, labels) == pytest.approx(4.5 / 6)
    assert np.isnan(metrics.roc_auc(probs, np.ones(5)))


def test_brier_logloss_accuracy():
    probs = np.array([0.9, 0.2, 0.6])
    labels = np.array([1, 0, 0])
    assert metrics.brier(probs, labels) == pytest.approx((0.01 + 0.04 + 0.36) / 3)
    assert metrics.log_loss(probs, labels) == pytest.approx(-(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3)
    assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)


def test_ece_hand_computed():
    probs = np.array([0.05, 0.05, 0.95, 0.95])
    labels = np.array([0, 1, 1, 1])
    # bin 0: mean 0.05, freq 0.5 -> 0.45; bin 9: mean 0.95, freq 1 -> 0.05; ECE = 0.5*0.45 + 0.5*0.05
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.25)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\[n\]"):
        metrics.brier(np.zeros(3), np.zeros(4))
