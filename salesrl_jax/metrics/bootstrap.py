"""Uncertainty of a metric over conversations: percentile bootstrap intervals, alone and paired.

At one point of a conversation (turn k of those still running, or the last turn) every conversation
contributes one prediction, so resampling rows resamples conversations, the unit the data are
independent in. A paired interval resamples the same conversations for both methods, so the
difference's interval is narrower than the two intervals suggest when the methods err alike.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


def _resamples(n: int, rounds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def _safe(metric: Metric, probs: np.ndarray, labels: np.ndarray) -> float:
    return float(metric(probs, labels))  # NaN where undefined (AUC of a one-class resample): skipped below


def bootstrap_interval(metric: Metric, probs: np.ndarray, labels: np.ndarray, *, rounds: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of ``metric`` over ``rounds`` resamples of the rows (NaN if n < 2)."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    if len(probs) < 2:
        return float("nan"), float("nan")
    values = np.array([_safe(metric, probs[i], labels[i]) for i in _resamples(len(probs), rounds, seed)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (np.nan, np.nan)
    return float(lo), float(hi)


def paired_difference(metric: Metric, probs_a: np.ndarray, probs_b: np.ndarray, labels: np.ndarray, *,
                      rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on the same rows, and its percentile interval over resamples of those rows."""
    probs_a, probs_b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    labels = np.asarray(labels, np.float64)
    diff = _safe(metric, probs_a, labels) - _safe(metric, probs_b, labels)
    if len(labels) < 2:
        return diff, float("nan"), float("nan")
    values = np.array([_safe(metric, probs_a[i], labels[i]) - _safe(metric, probs_b[i], labels[i])
                       for i in _resamples(len(labels), rounds, seed)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (np.nan, np.nan)
    return diff, float(lo), float(hi)


def calibrated_null(metric: Metric, probs: np.ndarray, *, rounds: int = 1000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """What ``metric`` reads for a perfectly calibrated predictor with these predictions: outcomes drawn as
    ``y ~ Bernoulli(p)`` ``rounds`` times; returns the median and the ``level`` quantile.

    For ECE this is the sampling floor: with a few hundred conversations a calibrated model's ECE is not 0 (binned
    frequencies are noisy), so a measured ECE below the ``level`` quantile cannot be told from perfect calibration
    at this n, and a bar below the median cannot be met even by the truth."""
    probs = np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    if len(probs) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([_safe(metric, probs, (rng.random(len(probs)) < probs).astype(np.float64))
                       for _ in range(rounds)])
    median, high = np.nanpercentile(values, [50, level * 100])
    return float(median), float(high)
