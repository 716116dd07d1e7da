"""A content-addressed embedding cache in SQLite (WAL mode).

Key = SHA-256 of (embedder identity, exact text), so a text embedded once is never sent again,
across runs and processes, and two embedding spaces never share an entry. SQLite gives what a
hand-made file format would not: atomic transactions (a kill -9 mid-run loses at most the batch
being written, never corrupts what is there), and safe concurrent use by several processes
(WAL: readers never block the writer; writers wait up to ``busy_timeout``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from salesrl_jax.embed.base import Embedder, EmbedderIdentity

_LOOKUP_CHUNK = 900  # stays below SQLite's default limit of 999 bound parameters per statement


def text_key(identity: EmbedderIdentity, text: str) -> bytes:
    return hashlib.sha256(identity.key.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()[:16]


@dataclasses.dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __str__(self) -> str:
        return f"cache: {self.hits:,} hits, {self.misses:,} misses, hit rate {self.hit_rate:.1%}"


class EmbeddingCache:
    """Vectors by (identity, text), stored as float32 bytes."""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        # Switching a new database to WAL needs an exclusive lock and SQLite answers "database is
        # locked" at once, without waiting, when another process is opening it at the same moment:
        # retry that step (and the schema) until the timeout.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, dim INTEGER NOT NULL, "
                                 "vector BLOB NOT NULL) WITHOUT ROWID")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.04)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills

    def get_many(self, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, stored_dim, blob in self._db.execute(
                    f"SELECT key, dim, vector FROM vectors WHERE key IN ({marks})", chunk):
                if stored_dim == dim:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [(key, vectors.shape[1], vectors[i].tobytes()) for i, key in enumerate(keys)]
        with self._db:  # one transaction: all of the batch or none of it
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO vectors (key, dim, vector) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedEmbedder:
    """An embedder in front of a cache: only texts never seen before reach the wrapped embedder.

    Misses are embedded in batches of ``batch_size`` and each batch is committed to the cache as
    soon as it returns, so a failure in a later batch loses nothing already embedded.
    """

    def __init__(self, embedder: Embedder, cache: EmbeddingCache, batch_size: int = 2048):
        self.embedder = embedder
        self.cache = cache
        self.identity = embedder.identity
        self.batch_size = batch_size
        self.stats = CacheStats()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        dim = self.identity.dim
        keys = [text_key(self.identity, t) for t in texts]
        unique = list(dict.fromkeys(keys))
        found = self.cache.get_many(unique, dim)
        missing = [k for k in unique if k not in found]
        text_of = dict(zip(keys, texts))
        misses = sum(1 for k in keys if k not in found)
        self.stats.hits += len(keys) - misses
        self.stats.misses += misses
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            vectors = self.embedder.embed([text_of[k] for k in batch])
            if vectors.shape != (len(batch), dim):
                raise ValueError(f"{self.identity.key} returned {vectors.shape}, expected {(len(batch), dim)}")
            self.cache.put_many(batch, vectors)
            found.update(zip(batch, vectors))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out


def cached_embedder(config, cache_path: str | os.PathLike[str] | None) -> Embedder:
    """``config.build()``, behind the SQLite cache at ``cache_path`` when one is given (an `EmbedderConfig`)."""
    built = config.build()
    if config.kind == "ngrams":  # hashing grams costs less than a cache lookup: nothing to cache
        return built
    return CachedEmbedder(built, EmbeddingCache(cache_path)) if cache_path is not None else built
