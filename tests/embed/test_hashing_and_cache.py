"""The offline embedder and the SQLite cache."""

import multiprocessing
import subprocess
import sys

import numpy as np
import pytest

from salesrl_jax.embed import CachedEmbedder, EmbeddingCache, EmbeddingSpaceMismatch, HashingEmbedder


def test_hashing_is_deterministic_normalised_and_similar_for_typos():
    emb = HashingEmbedder(dim=256)
    v = emb.embed(["I'm not sure about the price", "im not sure about teh price", "Let's get started today", "  "])
    assert v.shape == (4, 256) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > 0.5 > abs(v[0] @ v[2])
    np.testing.assert_array_equal(v, HashingEmbedder(dim=256).embed(
        ["I'm not sure about the price", "im not sure about teh price", "Let's get started today", "  "]))
    # batch composition never changes a text's vector
    np.testing.assert_array_equal(emb.embed(["Let's get started today"])[0], v[2])


def test_hashing_is_stable_across_processes():
    code = ("from salesrl_jax.embed import HashingEmbedder; import sys; "
            "sys.stdout.write(HashingEmbedder(64).embed(['same text'])[0].tobytes().hex())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert runs == {HashingEmbedder(64).embed(["same text"])[0].tobytes().hex()}


class CountingEmbedder:
    def __init__(self, inner):
        self.inner, self.identity, self.seen = inner, inner.identity, []

    def embed(self, texts):
        self.seen.extend(texts)
        return self.inner.embed(texts)


def test_cache_hits_misses_and_persistence(tmp_path):
    counting = CountingEmbedder(HashingEmbedder(32))
    cached = CachedEmbedder(counting, EmbeddingCache(tmp_path / "c.sqlite"))
    first = cached.embed(["a", "b", "a"])
    assert counting.seen == ["a", "b"] and (cached.stats.hits, cached.stats.misses) == (0, 3)
    again = CachedEmbedder(counting, EmbeddingCache(tmp_path / "c.sqlite"))  # a new run, same file
    np.testing.assert_array_equal(again.embed(["b", "a", "c"])[:2], first[[1, 0]])
    assert counting.seen == ["a", "b", "c"] and again.stats.hits == 2 and again.stats.misses == 1
    assert "hit rate 66.7%" in str(again.stats)


def test_cache_separates_embedding_spaces(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    a = CachedEmbedder(HashingEmbedder(32), cache).embed(["x"])
    b = CachedEmbedder(HashingEmbedder(32, word_weight=1.0), cache).embed(["x"])
    assert not np.array_equal(a, b) and len(cache) == 2


def test_identity_mismatch_is_refused_with_a_clear_message():
    with pytest.raises(EmbeddingSpaceMismatch, match="hashing:.*:64:.*hashing:.*:32"):
        HashingEmbedder(32).identity.require_same(HashingEmbedder(64).identity, "checkpoint runs/x")


def _writer(path, start):
    cached = CachedEmbedder(HashingEmbedder(16), EmbeddingCache(path))
    for i in range(20):
        cached.embed([f"text {start + i}", "shared"])


def test_two_processes_share_the_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(EmbeddingCache(path)) == 41


def test_cache_survives_kill_9_mid_write(tmp_path):
    path = tmp_path / "c.sqlite"
    code = (f"from salesrl_jax.embed import *\nc = CachedEmbedder(HashingEmbedder(16), EmbeddingCache({str(path)!r}), "
            "batch_size=50)\nimport itertools\nfor i in itertools.count(): c.embed([f't{i}-{j}' for j in range(200)])\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    import time
    deadline = time.time() + 30
    while time.time() < deadline and (not path.exists() or len(EmbeddingCache(path)) < 2000):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    cache = EmbeddingCache(path)
    assert cache._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = len(cache)
    assert n >= 2000 and n % 50 == 0  # whole batches only: a torn batch is never visible
    again = CachedEmbedder(HashingEmbedder(16), cache)
    again.embed(["t0-0", "t0-1"])
    assert again.stats.hits == 2


def test_sparse_and_dense_paths_give_identical_vectors(monkeypatch):
    from salesrl_jax.embed import hashing

    texts = ["The price is too high for us right now.", "Sounds good, send it over!", "", "ünïcödé ✓", "a"]
    sparse = HashingEmbedder(1536).embed(texts)
    monkeypatch.setattr(hashing, "SPARSE_FROM_DIM", 10**9)
    dense = HashingEmbedder(1536).embed(texts)
    np.testing.assert_array_equal(sparse, dense)
    assert sparse.dtype == np.float32 and np.allclose(np.linalg.norm(sparse[[0, 1, 3, 4]], axis=1), 1.0)


# sha256 of the float32 vectors of GOLDEN_TEXTS, written by the embedder before its rolling hash and its blocks of
# texts (session 32): the embedding space of every cached array and trained model must not move.
GOLDEN_TEXTS = ["Hello there, how are you?", "Price is too HIGH  for us", "", "ok", "Naïve café — déjà vu 123 $50 50%",
                "a" * 300, "the the the the"]
GOLDEN_DIGESTS = {64: "038219d96708216e59b810e90f0ff6c4407001076b8247a03b778f3dc1dc0dd8",
                  512: "e5cdba92a1057f1d8c3c533b724c79756ab96ae4cf0f322c1df05dd1df0fac1a",
                  1536: "64fdafd183607023ffdec460fb88edf53d6e32335c442c9d5a3d4fc86be6116f"}


@pytest.mark.parametrize("dim", sorted(GOLDEN_DIGESTS))
def test_hashing_reproduces_the_published_embedding_space(dim):
    import hashlib

    vectors = HashingEmbedder(dim).embed(GOLDEN_TEXTS)
    assert hashlib.sha256(vectors.tobytes()).hexdigest() == GOLDEN_DIGESTS[dim]


def test_blocks_of_texts_change_no_vector(monkeypatch):
    from salesrl_jax.embed import hashing

    texts = [f"turn {i}: {'not sure about the price' if i % 3 else 'sounds good'} {'x' * (i % 7)}" for i in range(11)]
    whole = HashingEmbedder(256).embed(texts)
    monkeypatch.setattr(hashing, "BLOCK_TEXTS", 4)  # blocks of 4, 4 and 3
    np.testing.assert_array_equal(HashingEmbedder(256).embed(texts), whole)
    np.testing.assert_array_equal(np.concatenate([HashingEmbedder(256).embed([t]) for t in texts]), whole)
