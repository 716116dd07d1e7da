"""Which embedder to use, as a typed config (shared by `salesrl embed`, training and scoring)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from salesrl_jax.data.readers import ArchiveReader
from salesrl_jax.data.validation import Limits
from salesrl_jax.embed.base import Embedder
from salesrl_jax.embed.ngrams import NGRAM_BUCKETS

# Below this many labelled conversations a data set is small: the training recipe adapts to it
# (salesrl_jax.run.config.resolve_regime) and, for real conversations, the text is read as n-grams.
SMALL_DATA_CONVERSATIONS = 20_000


@dataclasses.dataclass(frozen=True)
class EmbedderConfig:
    """An embedding space and how to reach it. Keys are never stored here: they come from the environment."""

    kind: Literal["auto", "hashing", "ngrams", "openai", "azure-openai", "sentence-transformers"] = "auto"
    """auto (default, offline): ngrams for a small archive of real conversations, else hashing, decided when the
    archive is embedded (`resolve_embedder`); hashing: dense hashed character and word n-grams (no download, no
    network); ngrams: sparse bags of hashed word 1-2-grams that the model weights by idf and embeds itself
    (salesrl_jax.embed.ngrams; offline); openai / azure-openai: the paper's setup (needs OPENAI_API_KEY /
    AZURE_OPENAI_API_KEY); sentence-transformers: a local model on disk."""
    dim: int = 512
    """Output dimension (hashing, and auto when it picks hashing: any; ngrams: the number of hash buckets, e.g.
    262144, which auto always uses; openai: the model's size or a shorter `dimensions`)."""
    max_grams: int = 256
    """ngrams only: distinct grams kept per turn (a longer turn keeps its most frequent ones)."""
    model: str = "text-embedding-3-large"
    """OpenAI model or Azure deployment name (openai kinds only)."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint instead of api.openai.com (openai only)."""
    azure_endpoint: str | None = None
    """Azure OpenAI resource endpoint (azure-openai only)."""
    model_path: Path | None = None
    """Directory of a saved sentence-transformers model (sentence-transformers only)."""

    def __post_init__(self) -> None:
        if self.dim < 8:
            raise ValueError(f"embedder.dim must be >= 8, got {self.dim}")
        if self.kind == "azure-openai" and not self.azure_endpoint:
            raise ValueError("embedder.kind=azure-openai needs embedder.azure_endpoint")
        if self.kind == "sentence-transformers" and self.model_path is None:
            raise ValueError("embedder.kind=sentence-transformers needs embedder.model_path")

    def resolved(self, kind: str) -> "EmbedderConfig":
        """This config with ``kind`` chosen for ``auto`` (the n-gram path hashes into `NGRAM_BUCKETS`)."""
        if self.kind != "auto":
            return self
        return dataclasses.replace(self, kind=kind, dim=NGRAM_BUCKETS if kind == "ngrams" else self.dim)

    @property
    def is_remote(self) -> bool:
        """Whether each text costs an API call (then a cache is worth its disk space)."""
        return self.kind in ("openai", "azure-openai")

    def build(self) -> Embedder:
        if self.kind == "auto":
            raise ValueError("embedder.kind auto is decided by the data: resolve_embedder(config, archive) first")
        if self.kind == "hashing":
            from salesrl_jax.embed.hashing import HashingEmbedder

            return HashingEmbedder(dim=self.dim)
        if self.kind == "ngrams":
            from salesrl_jax.embed.ngrams import NgramHasher

            return NgramHasher(buckets=self.dim, max_grams=self.max_grams)
        if self.kind in ("openai", "azure-openai"):
            from salesrl_jax.embed.openai_embedder import DIMENSIONS, OpenAIEmbedder

            dimensions = None if DIMENSIONS.get(self.model) == self.dim else self.dim
            return OpenAIEmbedder(self.model, dimensions, base_url=self.base_url,
                                  azure_endpoint=self.azure_endpoint if self.kind == "azure-openai" else None)
        from salesrl_jax.embed.sentence_transformers_embedder import SentenceTransformersEmbedder

        embedder = SentenceTransformersEmbedder(self.model_path)
        if embedder.identity.dim != self.dim:
            raise ValueError(f"{self.model_path} embeds into {embedder.identity.dim} dimensions; "
                             f"set embedder.dim={embedder.identity.dim}")
        return embedder


def resolve_embedder(config: EmbedderConfig, data, limits: Limits = Limits()) -> EmbedderConfig:
    """The concrete embedder for archive ``data`` when ``config.kind`` is auto (else ``config`` itself): ngrams for
    real conversations (no turn carries a simulator oracle probability) with fewer than `SMALL_DATA_CONVERSATIONS`
    labelled ones, hashing otherwise.

    Why: on both real development sets the n-gram path is 0.07-0.09 AUC above the hashed embeddings at the last
    turn, while on the simulator's text, whose typos the hashed character n-grams absorb, it is 0.004-0.008 below
    (docs/benchmarks.md). Large real archives keep the hashed embeddings only because nothing has measured them.
    The archive is read until the answer is known (its first conversation for simulated data, at most
    `SMALL_DATA_CONVERSATIONS` labelled ones otherwise), as ``limits`` reads it (the build's label key and speaker
    names); bad records are skipped here and reported by the build.
    """
    if config.kind != "auto":
        return config
    labelled = 0
    for conversation in ArchiveReader(data, limits=limits):
        if any(turn.oracle_prob is not None for turn in conversation.turns):
            return config.resolved("hashing")
        labelled += conversation.outcome is not None
        if labelled >= SMALL_DATA_CONVERSATIONS:
            return config.resolved("hashing")
    return config.resolved("ngrams")
