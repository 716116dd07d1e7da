"""From memory-mapped parts to device-ready batches: packed flat minibatches and padded ``[B, T]`` batches.

Training packs whole conversations, in a shuffled order, into minibatches of exactly ``rows``
turn slots (the tail of each minibatch is padding, under 1% at the default size), so every
minibatch has one shape and no compute is spent on per-conversation padding. Supervised
pretraining and PPO both use this layout.

Only index plans are computed up front; embeddings are gathered from the memory-mapped part
when a chunk is built, so RAM holds one chunk at a time whatever the cache's size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.store import Part, TurnArrays


class PackedBatch(NamedTuple):
    """Host arrays of ``M`` packed minibatches of ``N`` rows each (leading axes ``[M, N]``)."""

    embeddings: np.ndarray  # [M, N, D] (the cache's dtype)
    features: np.ndarray  # [M, N, F] float32
    starts: np.ndarray  # [M, N] bool
    valid: np.ndarray  # [M, N] bool
    labels: np.ndarray  # [M, N] float32: outcome of the turn's conversation
    index: np.ndarray  # [M, N] int64: the row in the part (-1: padding)
    embedding_scale: np.ndarray | None = None  # [M, N] row scales when the embeddings are int8
    gram_ids: np.ndarray | None = None  # [M, N, K] int32 sparse n-gram rows (arrays of that representation)
    gram_counts: np.ndarray | None = None  # [M, N, K] uint16


def plan_packing(lengths: np.ndarray, order: np.ndarray, rows: int) -> list[np.ndarray]:
    """Greedy first-fit-in-order packing: conversations ``order`` (indices into ``lengths``) -> a list of
    minibatches, each an array of conversation indices whose lengths sum to at most ``rows``."""
    if len(order) and lengths[order].max() > rows:
        raise ValueError(f"a conversation has {int(lengths[order].max())} turns, more than the "
                         f"{rows} rows of a minibatch (or of one of its parallel.segments slices); raise "
                         "pretrain.rows_per_minibatch")
    batches, current, used = [], [], 0
    for conv in order:
        n = int(lengths[conv])
        if used + n > rows:
            batches.append(np.array(current, dtype=np.int64))
            current, used = [], 0
        current.append(conv)
        used += n
    if current:
        batches.append(np.array(current, dtype=np.int64))
    return batches


def gather_packed(part: Part, batches: list[np.ndarray], rows: int, num_minibatches: int, segments: int = 1,
                  local: tuple[int, int] | None = None) -> PackedBatch:
    """Materialise up to ``num_minibatches`` planned minibatches from ``part``; missing ones are all padding.

    ``segments > 1``: ``batches`` holds packs of ``rows // segments`` slots (`plan_packing`), ``segments``
    consecutive packs to a minibatch, each at its own slice of the ``rows``. ``local=(lo, hi)``: only slices
    ``lo..hi-1`` of every minibatch, ``[M, (hi - lo) rows / segments]`` (a process of a distributed run reads
    just the slices its devices hold)."""
    if len(batches) > num_minibatches * segments:
        raise ValueError("more planned minibatches than the chunk holds")
    if rows % segments:
        raise ValueError(f"{rows} rows do not split into {segments} equal segments")
    lo, hi = local or (0, segments)
    slice_rows = rows // segments
    width = (hi - lo) * slice_rows
    offsets = np.asarray(part.offsets)
    index = np.full((num_minibatches, width), -1, dtype=np.int64)
    starts = np.zeros((num_minibatches, width), dtype=bool)
    labels = np.zeros((num_minibatches, width), dtype=np.float32)
    outcome = np.asarray(part.outcome)
    for j, convs in enumerate(batches):
        m, s = divmod(j, segments)
        if not lo <= s < hi or not len(convs):
            continue
        at = (s - lo) * slice_rows
        lengths = offsets[convs + 1] - offsets[convs]
        row_index = np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in convs])
        n = len(row_index)
        index[m, at:at + n] = row_index
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        starts[m, at + first] = True
        labels[m, at:at + n] = np.repeat(outcome[convs].astype(np.float32), lengths)
    rows = width
    valid = index >= 0
    flat = np.where(valid, index, 0).reshape(-1)
    order = np.argsort(flat, kind="stable")  # sorted reads are sequential on the memory map
    padding = ~valid.reshape(-1)
    embeddings = _gather_rows(part.embeddings, flat, order, padding)
    features = np.asarray(part.features)[flat]
    features[padding] = 0
    scale = grams = None
    if part.embedding_scale is not None:
        scale = np.where(valid, np.asarray(part.embedding_scale)[index.clip(0)], 1.0).astype(np.float32)
    if part.sparse:  # stored as wide as the part's widest turn; padded to the arrays' max_grams: one shape
        width = part.max_grams or part.gram_ids.shape[1]
        grams = [np.pad(_gather_rows(a, flat, order, padding), ((0, 0), (0, width - a.shape[1])))
                 .reshape(num_minibatches, rows, width) for a in (part.gram_ids, part.gram_counts)]
    return PackedBatch(embeddings.reshape(num_minibatches, rows, -1), features.reshape(num_minibatches, rows, -1),
                       starts, valid, labels, index, scale, *(grams or (None, None)))


def _gather_rows(source: np.ndarray, flat: np.ndarray, order: np.ndarray, padding: np.ndarray) -> np.ndarray:
    """``source[flat]`` read in sorted order (sequential on the memory map), padding rows zeroed."""
    out = np.empty((flat.size, source.shape[1]), dtype=source.dtype)
    out[order] = source[flat[order]]
    out[padding] = 0
    return out


class ChunkPlan(NamedTuple):
    part: int
    minibatches: list[np.ndarray]


def epoch_plan(arrays: TurnArrays, split: str, valid_fraction: float, split_seed: int, seed: int, epoch: int,
               rows: int, chunk_minibatches: int, shuffle: bool = True, segments: int = 1) -> list[ChunkPlan]:
    """The whole epoch's chunks, deterministically from ``(seed, epoch)``: parts in a shuffled order,
    conversations shuffled within each part, packed, then cut into chunks of ``chunk_minibatches``.
    ``segments``: each minibatch is that many packs of ``rows // segments`` slots (`gather_packed`)."""
    rng = np.random.default_rng([seed, epoch])
    part_order = rng.permutation(len(arrays)) if shuffle else np.arange(len(arrays))
    plan = []
    for p in part_order:
        part = arrays.part(int(p))
        chosen = split_conversations(part, split, valid_fraction, split_seed)
        if shuffle:
            chosen = rng.permutation(chosen)
        batches = plan_packing(part.lengths, chosen, rows // segments)
        per_chunk = chunk_minibatches * segments
        for start in range(0, len(batches), per_chunk):
            plan.append(ChunkPlan(int(p), batches[start:start + per_chunk]))
    return plan


def ppo_plan(arrays: TurnArrays, valid_fraction: float, split_seed: int, seed: int, updates: int, rows: int,
             minibatches: int, segments: int = 1) -> list[ChunkPlan]:
    """The packed minibatches of every PPO update, fixed by the seed (indices only, no data read): passes over
    the training split, parts and conversations shuffled per pass, up to ``minibatches`` minibatches per update
    (each ``segments`` packs of ``rows // segments`` slots, as in `epoch_plan`)."""
    plan: list[ChunkPlan] = []
    epoch = 0
    while len(plan) < updates:
        before = len(plan)
        rng = np.random.default_rng([seed, 1_000_003, epoch])
        for p in rng.permutation(len(arrays)):
            part = arrays.part(int(p))
            chosen = rng.permutation(split_conversations(part, "train", valid_fraction, split_seed))
            packs = plan_packing(part.lengths, chosen, rows // segments)
            # The last update of a part may hold fewer packs: the missing ones are all padding and
            # the update skips them (no optimizer step on an empty minibatch).
            per_update = minibatches * segments
            for start in range(0, len(packs), per_update):
                plan.append(ChunkPlan(int(p), packs[start:start + per_update]))
                if len(plan) == updates:
                    return plan
        if len(plan) == before:
            raise ValueError(f"{arrays.path}: no labelled training conversations for PPO ({arrays.labels_note()})")
        epoch += 1
    return plan


class PartCache:
    """The one memory-mapped part in use (consecutive chunks mostly share a part)."""

    def __init__(self, arrays: TurnArrays):
        self.arrays, self.index, self.part = arrays, None, None

    def get(self, index: int) -> Part:
        if index != self.index:
            self.index, self.part = index, self.arrays.part(index)
        return self.part
