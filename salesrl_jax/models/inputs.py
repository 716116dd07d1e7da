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

    embeddings: jnp.ndarray  # [N, D] float16/float32 turn-text embeddings, or int8 with embedding_scale
    features: jnp.ndarray  # [N, F] float32 turn features (salesrl_jax.features)
    starts: jnp.ndarray  # [N] bool: first turn of its conversation
    valid: jnp.ndarray  # [N] bool: a real turn (False: padding)
    embedding_scale: jnp.ndarray | None = None  # [N] row scales of int8 embeddings (embedding = int8 * scale)
