"""The offline default embedder: hashed character and word n-grams, signed-hashed into ``dim`` buckets.

For a text, the features are the character 3-, 4- and 5-grams of `` text `` (lower-cased,
whitespace-normalised; the padding spaces make word starts and ends features of their own) and the
word unigrams and bigrams. Feature ``f`` adds ``w_f * s(f)`` to bucket ``h(f) mod dim``, with a
sign hash ``s(f) in {-1, +1}`` so collisions cancel in expectation (Weinberger et al., 2009: the
signed hashing trick preserves inner products in expectation). Counts are damped as
``sign(x) log(1 + |x|)`` and the vector is L2-normalised.

Why this design: it needs no download, is deterministic across processes (hashes are explicit
polynomial and CRC32 hashes, never Python's salted ``hash``), and is fast because the character
n-grams of a block of texts are hashed in one vectorised numpy pass. Character n-grams survive the
simulator's typos and casing noise, where word features alone would not; word bigrams catch short
phrases ("not sure", "send it").
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

from salesrl_jax.embed.base import EmbedderIdentity

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9$%']+")
_PRIME = np.uint64(1099511628211)  # FNV prime: a well-mixing multiplier for the polynomial hash
_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio constant (Fibonacci hashing) for the final mix
SPARSE_FROM_DIM = 1024  # from this width the touched-cells path is faster than dense arrays (measured)
BLOCK_TEXTS = 1024
"""Texts per vectorised pass. A text's vector never depends on the others, so this changes no value, only memory: a
pass over 20,000 texts (a `salesrl score` chunk) allocates arrays of tens of MB that the allocator maps fresh, and
page faults, each time; blocks of 1,024 reuse cache-sized buffers (measured on 19,674 simulator turns, 2 cores: 25-82
us a text in one pass, 17-19 in blocks of 1,024; docs/benchmarks.md, session 32)."""


class HashingEmbedder:
    """Offline, deterministic text embedder (see module docstring).

    Args:
      dim: output dimension.
      char_ngrams: character n-gram sizes.
      word_weight: weight of word unigram/bigram features relative to character n-grams.
    """

    VERSION = "1"

    def __init__(self, dim: int = 512, char_ngrams: tuple[int, ...] = (3, 4, 5), word_weight: float = 2.0):
        if dim < 8:
            raise ValueError(f"dim must be >= 8, got {dim}")
        self.dim = dim
        self.char_ngrams = tuple(char_ngrams)
        self.word_weight = word_weight
        grams = ",".join(map(str, self.char_ngrams))
        self.identity = EmbedderIdentity("hashing", f"char{grams}+word12:w{word_weight:g}", dim, self.VERSION)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) > BLOCK_TEXTS:
            return np.concatenate([self._embed_block(texts[i:i + BLOCK_TEXTS])
                                   for i in range(0, len(texts), BLOCK_TEXTS)])
        return self._embed_block(texts)

    def _embed_block(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        normalised = [" " + _SPACE.sub(" ", t.lower()).strip() + " " for t in texts]
        rows, buckets, weights = [], [], []
        # Character n-grams for the whole batch at once: texts joined by NUL, n-grams that
        # cross a NUL are dropped.
        joined = "\0".join(normalised).encode("utf-8")
        data = np.frombuffer(joined, dtype=np.uint8).astype(np.uint64)
        is_nul = data == 0
        text_of_byte = np.cumsum(is_nul)
        # The n-gram of size s at byte i hashes to h_s(i) = sum_{k<s} (data[i+k] + s) P^(s-1-k) (mod 2^64), which is
        # H_s(i) + s (1 + P + ... + P^(s-1)) with H_s(i) = sum_{k<s} data[i+k] P^(s-1-k). H grows one byte at a time,
        # H_{s+1}(i) = H_s(i) P + data[i+s], so every size comes from one pass per byte of the largest gram.
        h = np.zeros(len(data), dtype=np.uint64)
        has_nul = np.zeros(len(data), dtype=bool)
        powers = 0  # 1 + P + ... + P^(s-1) mod 2^64, in Python integers (numpy scalars warn on the wrap)
        for size in range(1, max(self.char_ngrams, default=0) + 1):
            if len(data) < size:
                break
            count = len(data) - size + 1
            h = h[:count] * _PRIME + data[size - 1:size - 1 + count]
            has_nul = has_nul[:count] | is_nul[size - 1:size - 1 + count]
            powers = (powers * int(_PRIME) + 1) % 2 ** 64
            if size in self.char_ngrams:
                keep = ~has_nul
                rows.append(text_of_byte[:count][keep])
                buckets.append(h[keep] + np.uint64(size * powers % 2 ** 64))
                weights.append(np.ones(int(keep.sum())))
        # Word unigrams and bigrams: few per text, hashed with CRC32.
        w_rows, w_hash = [], []
        for row, text in enumerate(normalised):
            words = _WORD.findall(text)
            for i, word in enumerate(words):
                w_rows.append(row)
                w_hash.append(zlib.crc32(word.encode()))
                if i:
                    w_rows.append(row)
                    w_hash.append(zlib.crc32((words[i - 1] + " " + word).encode(), 0x5EED))
        if w_rows:
            rows.append(np.asarray(w_rows))
            buckets.append(np.asarray(w_hash, dtype=np.uint64) * _PRIME)
            weights.append(np.full(len(w_rows), self.word_weight))
        row = np.concatenate(rows)
        mixed = np.concatenate(buckets) * _MIX
        bucket = (mixed >> np.uint64(32)) % np.uint64(self.dim)
        sign = np.where((mixed >> np.uint64(31)) & np.uint64(1), 1.0, -1.0)
        flat = row.astype(np.int64) * self.dim + bucket.astype(np.int64)
        weight = sign * np.concatenate(weights)
        if self.dim < SPARSE_FROM_DIM:
            counts = np.bincount(flat, weights=weight, minlength=n * self.dim).reshape(n, self.dim)
            counts = np.sign(counts) * np.log1p(np.abs(counts))
            norms = np.linalg.norm(counts, axis=1, keepdims=True)
            return (counts / np.maximum(norms, 1e-12)).astype(np.float32)
        # Wide vectors: work on the touched cells only (a text touches ~100 buckets), so the cost no
        # longer grows with the dimension. Same values as the dense path (tested).
        cells, slot = np.unique(flat, return_inverse=True)
        values = np.bincount(slot, weights=weight, minlength=len(cells))
        values = np.sign(values) * np.log1p(np.abs(values))
        cell_row = cells // self.dim
        norms = np.sqrt(np.bincount(cell_row, weights=values * values, minlength=n))
        out = np.zeros(n * self.dim, dtype=np.float32)
        out[cells] = values / np.maximum(norms[cell_row], 1e-12)
        return out.reshape(n, self.dim)
