"""Points of a conversation at which forecasts are compared."""

from __future__ import annotations

import numpy as np

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
"""Fractions of a conversation seen. Turn ``ceil(f T)`` depends on the total length ``T``, which a live
system does not know at that turn: by-fraction figures are for comparison with the literature only; by
turn index (over conversations still running) is the causal view."""


def turn_at_fraction(fraction: float, length: np.ndarray) -> np.ndarray:
    """0-based index of turn ``ceil(f T)`` (at least the first turn) for conversations of ``length`` turns."""
    return np.maximum(np.ceil(fraction * np.asarray(length)).astype(np.int32), 1) - 1
