"""The embedder interface and the identity that names an embedding space."""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class EmbedderIdentity:
    """What makes two embedders produce the same space: goes into cache keys and checkpoints."""

    kind: str  # "hashing", "openai", "azure-openai", "sentence-transformers"
    model: str
    dim: int
    version: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.model}:{self.dim}:{self.version}"

    def require_same(self, other: "EmbedderIdentity", what: str = "this model") -> None:
        """Refuse, with a clear message, to mix embedding spaces."""
        if self != other:
            raise EmbeddingSpaceMismatch(
                f"{what} was built with embeddings {other.key!r}, but the embedder in use is {self.key!r}; "
                "vectors from different embedding spaces are not comparable. Embed with the same embedder "
                "(kind, model, dimension, version) or retrain."
            )


class EmbeddingSpaceMismatch(ValueError):
    """Raised when vectors from two different embedding spaces would be mixed."""


class Embedder(Protocol):
    """Turns a batch of texts into a ``[n, dim]`` float32 array."""

    identity: EmbedderIdentity

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
