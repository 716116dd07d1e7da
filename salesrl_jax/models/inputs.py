"""What the model reads per turn: a flat batch of turns from one or more conversations."""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TurnInputs:
    """A flat batch of ``N`` turns; conversations are consecutive runs of rows.

    Rows of one conversation are in turn order and the first row of each has ``starts`` set, so
    the same layout serves packed minibatches (many conversations of different lengths, no
    padding between them) and padded ``[B, T]`` batches flattened row-major (every ``T``-th row
    starts a conversation). Nothing here reads the outcome: the labels travel separately.
    """

    embeddings: "jnp.ndarray | GramBags"  # [N, D] float16/float32 turn-text embeddings, or int8 with
    # embedding_scale, or the turns' sparse n-gram bags [N, K] (arrays of the ngrams representation)
    features: jnp.ndarray  # [N, F] float32 turn features (salesrl_jax.features)
    starts: jnp.ndarray  # [N] bool: first turn of its conversation
    valid: jnp.ndarray  # [N] bool: a real turn (False: padding)
    embedding_scale: jnp.ndarray | None = None  # [N] row scales of int8 embeddings (embedding = int8 * scale)
    # Static: the N rows are this many equal slices, none of which a conversation crosses (the packed layout of
    # a data-parallel run, `salesrl_jax.parallel`); the history scans run per slice.
    segments: int = struct.field(pytree_node=False, default=1)

    @classmethod
    def from_packed(cls, batch, m: int | None = None, valid=None, segments: int = 1) -> "TurnInputs":
        """The inputs of host minibatch ``m`` of a `salesrl_jax.arrays.batches.PackedBatch` (all ``[M, N]`` of them
        when ``m`` is None), as host arrays; ``valid`` replaces the batch's mask; ``segments``: the slices each
        minibatch was packed in (`salesrl_jax.arrays.batches.plan_packing`)."""
        def pick(x):
            return x if m is None or x is None else x[m]

        text = (pick(batch.embeddings) if batch.gram_ids is None
                else GramBags(pick(batch.gram_ids), pick(batch.gram_counts)))
        return cls(text, pick(batch.features), pick(batch.starts), pick(batch.valid) if valid is None else valid,
                   pick(batch.embedding_scale), segments)


@struct.dataclass
class GramBags:
    """Sparse text of turns: padded hashed n-gram buckets and counts (`salesrl_jax.embed.ngrams`), read by the
    model's embedding bag (`salesrl_jax.models.bag`) in place of dense embeddings."""

    ids: jnp.ndarray  # [..., K] int32 bucket ids (0: padding)
    counts: jnp.ndarray  # [..., K] uint16 / float32 counts (0: padding)

    @property
    def shape(self) -> tuple[int, ...]:
        """The batch shape and K, like a dense ``[..., D]`` embedding array's."""
        return self.ids.shape
