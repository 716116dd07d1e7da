"""Bootstrap weights of the ensemble heads, fixed per conversation for the whole run.

Head ``k`` minimises its cross-entropy with weight ``w_{k,c} ~ Exp(1)`` on conversation ``c`` (the Bayesian
bootstrap, Rubin 1981): each head fits its own reweighting of the training set, so the heads agree where many
conversations support the fit and disagree where few do. The weights must stay fixed for the run: drawn afresh
at every minibatch, each conversation's expected weight is 1 for every head, all heads minimise the same
objective and converge to one function (their disagreement averaged 0.004 so).

``w`` is a hash of (run seed, part, the conversation's first row in its part, head): the same in every epoch,
after a resume, and in both phases, with no state to carry or save.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose output bits each depend on every input bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def conversation_first_rows(index: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``[..., N]`` int64: for every row of packed minibatches (``index``: the row in the part, -1 for padding;
    ``starts``: conversation starts), the part row where its conversation begins (-1 for padding)."""
    positions = np.arange(index.shape[-1])
    last_start = np.maximum.accumulate(np.where(starts, positions, 0), axis=-1)
    return np.where(index >= 0, np.take_along_axis(index, last_start, axis=-1), -1)


def bootstrap_weights(seed: int, part: int, first_rows: np.ndarray, heads: int) -> np.ndarray:
    """``[..., heads]`` float32 Exp(1) weights of the conversations starting at ``first_rows`` of ``part`` (0 for
    padding rows, ``first_rows < 0``)."""
    with np.errstate(over="ignore"):
        base = _mix(_mix(np.uint64(seed) + _GOLDEN) ^ (np.uint64(part) * _GOLDEN))
        conversation = _mix(base ^ (first_rows.astype(np.int64).view(np.uint64) + _GOLDEN))
        head = np.arange(1, heads + 1, dtype=np.uint64) * _GOLDEN
        bits = _mix(conversation[..., None] ^ head)
    uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53  # in (0, 1)
    weights = -np.log(uniform)
    return np.where(first_rows[..., None] >= 0, weights, 0.0).astype(np.float32)
