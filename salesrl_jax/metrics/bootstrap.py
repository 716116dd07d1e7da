"""Uncertainty of a metric over conversations: percentile bootstrap intervals, alone and paired.

At one point of a conversation (turn k of those still running, or the last turn) every conversation
contributes one prediction, so resampling rows resamples conversations, the unit the data are
independent in. A paired interval resamples the same conversations for both methods, so the
difference's interval is narrower than the two intervals suggest when the methods err alike.

**Repeated cross-validation.** Predictions may also be ``[repeats, n]``: each row one repetition's
out-of-fold predictions for the same ``n`` conversations (another assignment of them to folds). The
metric is then the mean over repetitions, ``(1 / R) sum_r metric(p_r, y)``, and a resample draws
conversations once for every repetition, so the interval is that of the mean (a conversation's
predictions are not independent across repetitions: its outcome is the same). Averaging over fold
assignments removes the noise of one assignment from the estimate; it cannot remove the noise of the
conversations themselves, which the interval keeps.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from salesrl_jax.metrics.binary import bin_index, checked, expected_calibration_error, roc_auc

Metric = Callable[[np.ndarray, np.ndarray], float]


def _resamples(n: int, rounds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def _safe(metric: Metric, probs: np.ndarray, labels: np.ndarray) -> float:
    return float(metric(probs, labels))  # NaN where undefined (AUC of a one-class resample): skipped below


def resampled_auc(probs: np.ndarray, labels: np.ndarray, resamples: np.ndarray, block: int = 100) -> np.ndarray:
    """`roc_auc` of every resample ``probs[i], labels[i]`` for the rows ``i`` of ``resamples`` ``[rounds, n]``,
    sorting once instead of once per resample (the bootstrap's cost was its 300-1,000 sorts).

    A resample holds row j ``c_j`` times, so with the scores' tie groups g in ascending order, ``P_g`` and ``N_g``
    the resample's positive and negative counts in group g:
    ``AUC = sum_g P_g (sum_{h<g} N_h + N_g / 2) / (sum P sum N)``, the Mann-Whitney statistic with ties
    counted half (what `roc_auc`'s average ranks compute). NaN for a resample with one class."""
    return _counted_auc(probs, labels, len(resamples),
                        lambda first, last: _resample_counts(resamples[first:last], len(probs)), block)


def _resample_counts(chunk: np.ndarray, n: int) -> np.ndarray:
    """``[len(chunk), n]``: how often each resample (a row of drawn row indices) holds each of the ``n`` rows. Taken
    a block of resamples at a time, so memory stays bounded."""
    flat = (np.arange(len(chunk))[:, None] * n + chunk).ravel()
    return np.bincount(flat, minlength=len(chunk) * n).reshape(len(chunk), n)


def counted_auc(probs: np.ndarray, labels: np.ndarray, counts: np.ndarray, block: int = 100) -> np.ndarray:
    """`roc_auc` of ``probs, labels`` with row j counted ``counts[i, j]`` times, for every row i of ``counts``
    ``[rounds, n]``: a resample given by how often it holds each row (`resampled_auc` gives it by the rows drawn)."""
    counts = np.asarray(counts)
    return _counted_auc(probs, labels, len(counts), lambda first, last: counts[first:last], block)


def _counted_auc(probs: np.ndarray, labels: np.ndarray, rounds: int, counts_of: Callable, block: int) -> np.ndarray:
    probs, labels = checked(probs, labels)  # the checks of one AUC: labels 0/1, probabilities in [0, 1]
    order = np.argsort(probs, kind="mergesort")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(probs[order])) + 1])  # each tie group's first sorted row
    positive = labels[order] == 1
    out = []
    for first in range(0, rounds, block):
        counts = counts_of(first, first + block)[:, order].astype(np.float64)
        pos = np.add.reduceat(np.where(positive, counts, 0.0), starts, axis=1)
        neg = np.add.reduceat(np.where(positive, 0.0, counts), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        total_pos, total_neg = pos.sum(1), neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (pos * (below + neg / 2)).sum(1) / (total_pos * total_neg)
        out.append(np.where((total_pos > 0) & (total_neg > 0), auc, np.nan))
    return np.concatenate(out)


def binned_ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10, block: int = 100) -> np.ndarray:
    """`expected_calibration_error` of ``probs [n]`` against every row of ``labels [rounds, n]`` (the outcomes
    drawn by `calibrated_null`), a block of rows at a time.

    With the bins fixed by the probabilities, ``ECE = (1 / n) sum_b |sum_{j in b} (p_j - y_j)|``: the bin's
    weight ``n_b / n`` times ``|mean p - frequency|``, whose denominators cancel."""
    probs = np.asarray(probs, np.float64)
    onehot = _bin_onehot(probs, bins)
    predicted = probs @ onehot  # [bins]
    return np.concatenate([np.abs(predicted - labels[first:first + block] @ onehot).sum(1) / len(probs)
                           for first in range(0, len(labels), block)])


def resampled_ece(probs: np.ndarray, labels: np.ndarray, resamples: np.ndarray, bins: int = 10,
                  block: int = 100) -> np.ndarray:
    """`expected_calibration_error` of every resample ``probs[i], labels[i]`` for the rows ``i`` of ``resamples``
    ``[rounds, n]``, a block of resamples at a time: a resample holding row j ``c_j`` times has
    ``ECE = sum_b |sum_{j in b} c_j (p_j - y_j)| / n`` (`binned_ece`'s sum, counted), each row's bin fixed once."""
    probs, labels = checked(probs, labels)
    n = len(probs)
    residual = _bin_onehot(probs, bins) * (probs - labels)[:, None]  # [n, bins]: p_j - y_j in row j's bin
    return np.concatenate([np.abs(_resample_counts(resamples[first:first + block], n) @ residual).sum(1) / n
                           for first in range(0, len(resamples), block)])


def _bin_onehot(probs: np.ndarray, bins: int) -> np.ndarray:
    """``[n, bins]``: 1 in each probability's equal-width bin (`bin_index`)."""
    _, index = bin_index(probs, bins)
    onehot = np.zeros((len(probs), bins))
    onehot[np.arange(len(probs)), index] = 1.0
    return onehot


def _resampled(metric: Metric, probs: np.ndarray, labels: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    if probs.ndim == 2:  # repetitions [R, n]: the mean over them, each on the same resampled conversations
        return np.mean([_resampled(metric, row, labels, resamples) for row in probs], axis=0)
    if metric is roc_auc:
        return resampled_auc(probs, labels, resamples)
    if metric is expected_calibration_error:
        return resampled_ece(probs, labels, resamples)
    return np.array([_safe(metric, probs[i], labels[i]) for i in resamples])


def _estimate(metric: Metric, probs: np.ndarray, labels: np.ndarray) -> float:
    """``metric`` of ``probs`` ``[n]``, or its mean over the repetitions of ``probs`` ``[R, n]``."""
    if probs.ndim == 2:
        return float(np.mean([_safe(metric, row, labels) for row in probs]))
    return _safe(metric, probs, labels)


def estimate(metric: Metric, probs: np.ndarray, labels: np.ndarray) -> float:
    """``metric(probs, labels)``, or for repeated cross-validation (``probs`` ``[R, n]``) its mean over the
    repetitions (see the module docstring)."""
    probs, labels = _as_predictions(probs, labels)
    return _estimate(metric, probs, labels)


def _as_predictions(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    if probs.ndim not in (1, 2) or probs.shape[-1] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"predictions must be [n] or [repeats, n] for {labels.shape} labels, got {probs.shape}")
    return probs, labels


def bootstrap_interval(metric: Metric, probs: np.ndarray, labels: np.ndarray, *, rounds: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of ``metric`` over ``rounds`` resamples of the rows (NaN if n < 2);
    ``probs`` ``[n]``, or ``[R, n]`` for repeated cross-validation (the mean's interval)."""
    probs, labels = _as_predictions(probs, labels)
    if len(labels) < 2:
        return float("nan"), float("nan")
    values = _resampled(metric, probs, labels, _resamples(len(labels), rounds, seed))
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (np.nan, np.nan)
    return float(lo), float(hi)


def paired_difference(metric: Metric, probs_a: np.ndarray, probs_b: np.ndarray, labels: np.ndarray, *,
                      rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on the same rows, and its percentile interval over resamples of those rows
    (``[n]`` or ``[R, n]`` each: the difference of the means over repetitions)."""
    probs_a, labels = _as_predictions(probs_a, labels)
    probs_b, _ = _as_predictions(probs_b, labels)
    diff = _estimate(metric, probs_a, labels) - _estimate(metric, probs_b, labels)
    if len(labels) < 2:
        return diff, float("nan"), float("nan")
    resamples = _resamples(len(labels), rounds, seed)
    values = _resampled(metric, probs_a, labels, resamples) - _resampled(metric, probs_b, labels, resamples)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (np.nan, np.nan)
    return diff, float(lo), float(hi)


def calibrated_null(metric: Metric, probs: np.ndarray, *, rounds: int = 1000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """What ``metric`` reads for a perfectly calibrated predictor with these predictions: outcomes drawn as
    ``y ~ Bernoulli(p)`` ``rounds`` times; returns the median and the ``level`` quantile.

    For ECE this is the sampling floor: with a few hundred conversations a calibrated model's ECE is not 0 (binned
    frequencies are noisy), so a measured ECE below the ``level`` quantile cannot be told from perfect calibration
    at this n, and a bar below the median cannot be met even by the truth.

    For repeated cross-validation (``probs`` ``[R, n]``) the repetitions share each draw of the outcomes, as they
    share the real ones (drawn from the mean prediction), and the metric is their mean."""
    probs = np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    if probs.shape[-1] < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    truth = probs.mean(0) if probs.ndim == 2 else probs
    if metric is expected_calibration_error:  # every draw at once, the same draws as one at a time
        drawn = (rng.random((rounds, len(truth))) < truth).astype(np.float64)
        values = np.mean([binned_ece(row, drawn) for row in np.atleast_2d(probs)], axis=0)
    else:
        values = np.array([_estimate(metric, probs, (rng.random(len(truth)) < truth).astype(np.float64))
                           for _ in range(rounds)])
    median, high = np.nanpercentile(values, [50, level * 100])
    return float(median), float(high)


def paired_mean_auc_difference(points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], *,
                               rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """The mean over several points of a conversation of ``AUC(a) - AUC(b)``, and its paired percentile interval.

    ``points``: per point ``(groups [n_k], probs_a, probs_b, labels [n_k])``, the probabilities ``[n_k]`` or
    ``[R, n_k]`` (repetitions: their mean), ``groups`` the conversation of each row (one row per conversation at
    a point). The points share conversations (those still running at turn 12 are running at turn 4), so a
    resample draws conversations once for all points: one drawn ``c`` times counts ``c`` times at every point that
    holds it. With ``G`` the conversations of every point, sorted, the draws are those of a resample of ``G`` rows
    (`bootstrap_interval`'s)."""
    universe = np.unique(np.concatenate([np.asarray(g) for g, *_ in points]))
    draws = _resamples(len(universe), rounds, seed)
    counts = np.zeros((rounds, len(universe)), np.int32)
    np.add.at(counts, (np.arange(rounds)[:, None], draws), 1)
    del draws
    diffs, values = [], np.zeros(rounds)
    for groups, probs_a, probs_b, labels in points:
        probs_a, labels = _as_predictions(probs_a, labels)
        probs_b, _ = _as_predictions(probs_b, labels)
        columns = np.searchsorted(universe, np.asarray(groups))
        if len(np.unique(columns)) != len(columns):
            raise ValueError("a point holds a conversation twice: one row per conversation at a point")
        def at_point(first: int, last: int, columns=columns) -> np.ndarray:  # a block of rounds: bounded memory
            return counts[first:last][:, columns]

        diffs.append(_estimate(roc_auc, probs_a, labels) - _estimate(roc_auc, probs_b, labels))
        for probs, sign in ((probs_a, 1.0), (probs_b, -1.0)):
            values += sign * np.mean([_counted_auc(row, labels, rounds, at_point, 100) for row in np.atleast_2d(probs)],
                                     axis=0)
    values /= len(points)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (np.nan, np.nan)
    return float(np.mean(diffs)), float(lo), float(hi)
