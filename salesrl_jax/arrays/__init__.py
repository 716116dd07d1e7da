"""Cached training arrays: per-turn embeddings, features and labels on disk, memory-mapped."""

from salesrl_jax.arrays.store import Part, TurnArrays

__all__ = ["Part", "TurnArrays"]
