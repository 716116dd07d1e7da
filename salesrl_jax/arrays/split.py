"""The validation split: which conversations a run holds out, by a seeded hash of the id.

A hash of the id (not a position in the cache) keeps the split stable across runs, machines, chunk
sizes and cache layouts, and lets every consumer (training, evaluation, calibration, baselines)
recompute it from ``(valid_fraction, split_seed)`` alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from salesrl_jax.arrays.store import Part, TurnArrays
from salesrl_jax.data.split import hash_order_by_label, keyed_hashes

Split = Literal["train", "valid", "all"]


def validation_mask(ids: tuple[str, ...] | list[str], fraction: float, seed: int) -> np.ndarray:
    """``[convs]`` bool: the conversations held out for validation, ``blake2b(seed, id) < fraction 2^64``."""
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    return keyed_hashes(ids, str(seed).encode() + b"\0") < np.uint64(fraction * 2.0 ** 64)


def split_conversations(part: Part, split: Split, fraction: float, seed: int) -> np.ndarray:
    """Indices of ``part``'s labelled conversations in ``split`` (``all``: every labelled one)."""
    labelled = np.asarray(part.outcome) >= 0
    if split == "all":
        return np.flatnonzero(labelled)
    held_out = validation_mask(part.ids, fraction, seed)
    return np.flatnonzero((held_out if split == "valid" else ~held_out) & labelled)


def held_out_count(arrays: TurnArrays, fraction: float, seed: int) -> int:
    """How many labelled conversations the validation split holds out."""
    return sum(len(split_conversations(part, "valid", fraction, seed)) for part in arrays.iter_parts())


def require_held_out(arrays: TurnArrays, fraction: float, seed: int) -> int:
    """Refuse a validation split that holds out no labelled conversation, naming the way out; returns the count."""
    if fraction <= 0:
        return 0
    held_out = held_out_count(arrays, fraction, seed)
    if held_out:
        return held_out
    # The usual way to get here: these arrays were carved out of a larger set by the same seeded id
    # hash (a held-out test set split off first), so none of their ids falls below the threshold.
    raise ValueError(f"{arrays.path}: data.valid_fraction {fraction} with data.split_seed {seed} holds out no "
                     "labelled conversation (if these arrays were split off a larger set with the same seed, pick "
                     "another --data.split-seed)")


def stratified_folds(ids: list[str] | tuple[str, ...], labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """``[convs]`` fold of each conversation: stratified by label, one conversation never split (each is one
    unit), and stable: within each label the conversations are ordered by a seeded hash of the id and dealt
    round-robin, so the assignment depends on the ids, labels and seed only (not on their order)."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(ids) < folds:
        raise ValueError(f"{len(ids)} labelled conversations cannot fill {folds} folds")
    fold = np.empty(len(ids), dtype=np.int32)
    offset = 0
    for ordered in hash_order_by_label(ids, labels.tolist(), f"folds:{seed}".encode() + b"\0"):
        fold[ordered] = (np.arange(len(ordered)) + offset) % folds
        offset += len(ordered)  # the next label continues the deal, so fold sizes differ by one at most
    return fold
