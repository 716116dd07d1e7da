"""Binary-prediction metrics on numpy arrays: discrimination and calibration.

All take ``probs`` and ``labels`` of shape ``[n]``: labels must be 0 or 1 and probabilities finite and in
[0, 1], else `ValueError` (an outcome code of 7 would otherwise give an AUC of 3.3 and a Brier of 4.4).
"""

from __future__ import annotations

import dataclasses

import numpy as np


def checked(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` and ``labels`` as float64 ``[n]`` arrays, or a ValueError saying which rule they break: one
    shape, labels 0 or 1, probabilities finite and in [0, 1]. Every metric here (and the bootstrap) checks alike."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probs.shape != labels.shape or probs.ndim != 1:
        raise ValueError(f"probs and labels must both be [n]; got {probs.shape} and {labels.shape}")
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        raise ValueError(f"labels must be 0 or 1; got {np.unique(labels[bad])[:5].tolist()} "
                         f"({int(bad.sum())} of {len(labels)})")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    return probs, labels


def accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Share of ``1[p >= threshold] == y``."""
    probs, labels = checked(probs, labels)
    return float(np.mean((probs >= threshold) == (labels == 1)))


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) identity, ties counted half.

    ``AUC = (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with
    average ranks for ties. NaN when only one class is present.
    """
    probs, labels = checked(probs, labels)
    n_pos = float(labels.sum())
    n_neg = float(len(labels) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(probs, kind="mergesort")
    sorted_probs = probs[order]
    ranks = np.empty(len(probs))
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_probs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(probs)]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error ``mean((p - y)^2)``."""
    probs, labels = checked(probs, labels)
    return float(np.mean((probs - labels) ** 2))


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood ``-mean(y log p + (1 - y) log(1 - p))``, p clipped to [eps, 1 - eps]."""
    probs, labels = checked(probs, labels)
    p = np.clip(probs, eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Equal-width bins: count, mean predicted probability and observed frequency per bin."""

    edges: np.ndarray  # [bins + 1]
    counts: np.ndarray  # [bins]
    mean_prob: np.ndarray  # [bins], NaN where empty
    frequency: np.ndarray  # [bins], NaN where empty


def bin_index(probs: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(edges [bins + 1], index [n])``: each probability's equal-width bin (1.0 in the last)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return edges, np.clip(np.digitize(probs, edges[1:-1], right=False), 0, bins - 1)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> Reliability:
    probs, labels = checked(probs, labels)
    edges, index = bin_index(probs, bins)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(index, weights=probs, minlength=bins) / counts
        frequency = np.bincount(index, weights=labels, minlength=bins) / counts
    return Reliability(edges=edges, counts=counts, mean_prob=mean_prob, frequency=frequency)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE = sum_b (n_b / n) |mean_prob_b - frequency_b| over equal-width bins (Naeini et al., 2015)."""
    rel = reliability(probs, labels, bins)
    filled = rel.counts > 0
    weights = rel.counts[filled] / rel.counts.sum()
    return float(np.sum(weights * np.abs(rel.mean_prob[filled] - rel.frequency[filled])))


def summary(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, ROC-AUC, Brier, log loss and ECE in one dict."""
    return {
        "n": float(len(np.asarray(probs))),
        "accuracy": accuracy(probs, labels),
        "auc": roc_auc(probs, labels),
        "brier": brier(probs, labels),
        "log_loss": log_loss(probs, labels),
        "ece": expected_calibration_error(probs, labels),
    }
