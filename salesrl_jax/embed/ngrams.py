"""Sparse text: each turn as a bag of hashed word 1- and 2-gram ids with counts (fastText-style input).

For a text, the tokens are scikit-learn's default word pattern ``\\b\\w\\w+\\b`` over the lower-cased
text (the same tokens as the TF-IDF baselines), and the grams are the tokens and the pairs of adjacent
tokens. Gram ``g`` goes to bucket ``1 + crc32(g) mod (buckets - 1)``; bucket 0 is padding. A turn is
stored as its distinct buckets and their counts, padded with 0 to ``max_grams`` columns:

    ids    [n, K] int32    bucket of each distinct gram (0: padding)
    counts [n, K] uint16   occurrences in the turn (0: padding)

These are raw counts: the tf-idf weighting ``(1 + log c) idf[id]`` and the row normalisation are the
model's (`salesrl_jax.models.bag`), whose idf is fitted on the training split only, so the cached
arrays do not depend on a split. A turn with more than ``max_grams`` distinct grams keeps the most
frequent ones (ties: the lower bucket); the arrays' manifest counts the turns that fill every column.

Why hashing, not a vocabulary: the id of a gram needs no fitted state, so any process (a worker, the
live `Scorer`) maps a new text exactly as training did; with 2^18 buckets collisions are rare (scikit-
learn's HashingVectorizer default is 2^20; measured, 2^18 with idf weights loses 0.005 AUC against a
true vocabulary on PersuasionForGood, docs/benchmarks.md). CRC32 is explicit and unsalted, so ids are
the same on every machine and run.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple, Sequence

import numpy as np

from salesrl_jax.embed.base import EmbedderIdentity

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
KIND = "ngrams"
NGRAM_BUCKETS = 2 ** 18  # the default width of the sparse space (what embedder.kind auto uses)


class GramRows(NamedTuple):
    """Padded sparse rows of ``n`` texts (see the module docstring)."""

    ids: np.ndarray  # [n, K] int32
    counts: np.ndarray  # [n, K] uint16


class NgramHasher:
    """Texts -> `GramRows`. ``buckets`` is the identity's ``dim``: the width of the sparse space."""

    VERSION = "1"

    def __init__(self, buckets: int = NGRAM_BUCKETS, max_grams: int = 256):
        if buckets < 16:
            raise ValueError(f"n-gram buckets must be >= 16, got {buckets}")
        if max_grams < 1:
            raise ValueError(f"max_grams must be >= 1, got {max_grams}")
        self.buckets, self.max_grams = buckets, max_grams
        self.identity = EmbedderIdentity(KIND, f"word12:crc32:k{max_grams}", buckets, self.VERSION)

    def bucket_ids(self, text: str) -> np.ndarray:
        """Bucket of every word 1- and 2-gram of ``text``, in text order (repeats kept)."""
        words = _TOKEN.findall(text.lower())
        grams = words + [a + " " + b for a, b in zip(words, words[1:])]
        return np.fromiter((zlib.crc32(g.encode()) % (self.buckets - 1) + 1 for g in grams), np.int64, len(grams))

    def grams(self, texts: Sequence[str]) -> GramRows:
        ids = np.zeros((len(texts), self.max_grams), np.int32)
        counts = np.zeros((len(texts), self.max_grams), np.uint16)
        for row, text in enumerate(texts):
            unique, count = np.unique(self.bucket_ids(text), return_counts=True)
            if len(unique) > self.max_grams:
                keep = np.sort(np.argsort(-count, kind="stable")[:self.max_grams])
                unique, count = unique[keep], count[keep]
            ids[row, :len(unique)] = unique
            counts[row, :len(unique)] = np.minimum(count, np.iinfo(np.uint16).max)
        return GramRows(ids, counts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError("the n-gram representation is sparse: use NgramHasher.grams(texts), not embed()")


def is_sparse(identity: EmbedderIdentity) -> bool:
    """Whether arrays and models of this embedding space hold sparse n-gram rows instead of dense vectors."""
    return identity.kind == KIND
