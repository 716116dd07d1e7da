"""How well a confidence score ranks predictions by their error: selective prediction and intervals.

``confidence [n]`` (higher: trust more) and per-prediction ``loss [n]`` (0/1 error, squared error, ...):

* risk-coverage curve: keep the ``k`` most confident predictions; coverage ``k / n``, risk the mean loss of the
  kept ones (ties in confidence broken by keeping the lower-loss first would flatter the score, so ties are
  averaged: each tied group enters at its mean loss);
* AURC: the mean of the risk over ``k = 1..n`` (Geifman et al., 2019), lower is better; the optimal AURC is that of
  a confidence ordering the predictions by their true loss;
* error-detection AUROC: how well low confidence separates the erroneous predictions from the correct ones.
"""

from __future__ import annotations

import math

import numpy as np

from salesrl_jax.metrics.binary import roc_auc


def _ranks01(values: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` mapped into [0, 1] (ties share a rank), for `roc_auc` on any scores."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return np.zeros(len(values))
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks / (len(values) - 1)


def risk_coverage(confidence: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage [n], risk [n])`` keeping the most confident predictions first (ties at their mean loss)."""
    confidence, loss = np.asarray(confidence, np.float64), np.asarray(loss, np.float64)
    if confidence.shape != loss.shape or confidence.ndim != 1 or not len(loss):
        raise ValueError(f"confidence and loss must both be [n > 0]; got {confidence.shape} and {loss.shape}")
    order = np.argsort(-confidence, kind="mergesort")
    c, l_sorted = confidence[order], loss[order]
    boundaries = np.flatnonzero(np.diff(c)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(c)]])
    group_mean = np.add.reduceat(l_sorted, starts) / (ends - starts)
    smoothed = np.repeat(group_mean, ends - starts)
    k = np.arange(1, len(c) + 1)
    return k / len(c), np.cumsum(smoothed) / k


def aurc(confidence: np.ndarray, loss: np.ndarray) -> float:
    """Area under the risk-coverage curve (mean risk over coverages ``1/n .. 1``)."""
    return float(np.mean(risk_coverage(confidence, loss)[1]))


def optimal_aurc(loss: np.ndarray) -> float:
    """AURC of the best possible confidence: one that ranks predictions by their true loss."""
    loss = np.asarray(loss, np.float64)
    return aurc(-loss, loss)


def error_detection_auroc(confidence: np.ndarray, error: np.ndarray) -> float:
    """AUROC of ``-confidence`` separating erroneous predictions (``error`` 1) from correct ones (0); NaN when
    all are one kind."""
    return roc_auc(_ranks01(-np.asarray(confidence, np.float64)), np.asarray(error, np.float64))


def separation_auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of a real-valued ``score`` for telling ``positive`` (1) from the rest (0)."""
    return roc_auc(_ranks01(score), np.asarray(positive, np.float64))


def interval_coverage(low: np.ndarray, high: np.ndarray, truth: np.ndarray) -> float:
    """Share of ``truth`` inside ``[low, high]``."""
    low, high, truth = (np.asarray(x, np.float64) for x in (low, high, truth))
    return float(np.mean((low <= truth) & (truth <= high)))


def conformal_rank(calibration_scores: int, level: float) -> int:
    """``k = ceil((m + 1) level)``: split-conformal's interval at nominal ``level`` reaches the ``k``-th smallest of
    ``m`` calibration scores, which covers a new exchangeable score with probability at least ``level``; ``k > m``
    means too few scores for any finite quantile (the interval must be everything)."""
    return math.ceil((calibration_scores + 1) * level)


def valid_coverage_range(n: int, level: float, calibration_turns: int | None = None, confidence: float = 0.95
                         ) -> tuple[float, float]:
    """The central ``confidence`` range of the coverage that a *valid* split-conformal interval at nominal ``level``
    shows on ``n`` independent test cases, when its quantile was the ``k``-th smallest of ``m = calibration_turns``
    calibration scores, ``k = ceil((m + 1) level)``. Its coverage given the calibration set is then
    ``C ~ Beta(k, m + 1 - k)`` (Vovk, 2012), so the count covered is beta-binomial ``BB(n, k, m + 1 - k)``; with
    ``m`` None (an unknown or pooled calibration), binomial ``B(n, level)``. A measured coverage outside the range
    is evidence that the interval is not valid; inside it, the distance to nominal is what the two finite samples
    give. At ``n = 545``, ``m = 548`` and level 0.9 it is about [0.864, 0.934]. (A bucket that pools several turn
    indices holds several turns of one conversation, which are not independent: its range is then a little
    narrow, so the check errs toward calling an interval invalid.)"""
    from scipy import stats

    tails = ((1 - confidence) / 2, (1 + confidence) / 2)
    if calibration_turns is None:
        low, high = stats.binom.ppf(tails, n, level)
    else:
        k = conformal_rank(calibration_turns, level)
        if k > calibration_turns:  # too few calibration turns: the interval is [0, 1], which covers everything
            return 1.0, 1.0
        low, high = stats.betabinom.ppf(tails, n, k, calibration_turns + 1 - k)
    return float(low / n), float(high / n)
