"""Text -> vectors: embedders with stable identities, and a content-addressed cache."""

from salesrl_jax.embed.base import Embedder, EmbedderIdentity, EmbeddingSpaceMismatch
from salesrl_jax.embed.cache import CachedEmbedder, EmbeddingCache
from salesrl_jax.embed.hashing import HashingEmbedder

__all__ = ["Embedder", "EmbedderIdentity", "EmbeddingSpaceMismatch", "CachedEmbedder", "EmbeddingCache",
           "HashingEmbedder"]
