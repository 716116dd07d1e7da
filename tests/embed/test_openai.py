"""The real `openai` client against a real local HTTP server, with injected faults."""

import numpy as np
import pytest

from salesrl_jax.embed.cache import CachedEmbedder, EmbeddingCache
from salesrl_jax.embed.openai_embedder import EmbeddingRequestError, OpenAIEmbedder, plan_batches
from tests.embed.fake_openai_server import FakeOpenAI, vector_for

KEY = "sk-test-SECRET-never-print-me"


@pytest.fixture()
def server():
    with FakeOpenAI(dim=3072, delay_s=1.5) as srv:
        yield srv


def _embedder(server, **kwargs):
    return OpenAIEmbedder(api_key=KEY, base_url=server.base_url, timeout_s=0.5, **kwargs)


def test_base64_round_trip_and_batching(server):
    texts = [f"turn number {i}" for i in range(5)]
    vectors = _embedder(server, max_inputs=2).embed(texts)
    assert vectors.shape == (5, 3072) and vectors.dtype == np.float32
    for text, vector in zip(texts, vectors):
        np.testing.assert_array_equal(vector, vector_for(text, 3072))
    assert [len(r["input"]) for r in server.requests] == [2, 2, 1]
    assert all(r["encoding_format"] == "base64" and r["model"] == "text-embedding-3-large" for r in server.requests)
    assert server.auth_headers[0] == f"Bearer {KEY}"


def test_dimensions_option(server):
    vectors = _embedder(server, dimensions=256).embed(["hello"])
    assert vectors.shape == (1, 256) and server.requests[0]["dimensions"] == 256
    assert _embedder(server, dimensions=256).identity.dim == 256


@pytest.mark.parametrize("fault", ["429", "500", "timeout"])
def test_transient_faults_are_retried_to_a_correct_result(server, fault):
    server.faults = [fault]
    vectors = _embedder(server).embed(["a", "b"])
    np.testing.assert_array_equal(vectors[1], vector_for("b", 3072))
    assert len(server.requests) == 2  # the failed attempt, then the retry


def test_persistent_failure_is_a_clear_error_without_the_key(server):
    server.faults = ["500"] * 10
    with pytest.raises(EmbeddingRequestError, match="HTTP 500") as info:
        _embedder(server, max_retries=2).embed(["a"])
    assert KEY not in str(info.value) and "SECRET" not in repr(info.value)


def test_malformed_body_is_a_clear_error(server):
    server.faults = ["malformed"]
    with pytest.raises(EmbeddingRequestError, match="malformed"):
        _embedder(server).embed(["a"])


@pytest.mark.parametrize("fault, message", [("nan", "NaN or infinite values for input 2"),
                                            ("same_index", "exactly once"),
                                            ("short_dim", "shape \\(3071,\\)"),
                                            ("html", "malformed body|not an embeddings response")])
def test_bad_vectors_are_refused_and_never_cached(server, tmp_path, fault, message):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    embedder = CachedEmbedder(_embedder(server, max_retries=0), cache, batch_size=3)
    server.faults = [fault]
    with pytest.raises(EmbeddingRequestError, match=message) as info:
        embedder.embed(["a", "b", "c"])
    assert "texts 0-2" in str(info.value) and KEY not in str(info.value)
    assert len(cache) == 0  # nothing of the bad batch was kept
    vectors = embedder.embed(["a", "b", "c"])  # the next (healthy) answer is used
    np.testing.assert_array_equal(vectors[2], vector_for("c", 3072))


def test_a_failing_batch_loses_nothing_already_embedded(server, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    texts = [f"t{i}" for i in range(6)]
    embedder = CachedEmbedder(_embedder(server, max_inputs=100, max_retries=0), cache, batch_size=2)
    server.faults = [None, None, "malformed"]
    with pytest.raises(EmbeddingRequestError):
        embedder.embed(texts)
    assert len(cache) == 4  # two batches committed before the third failed
    server.requests.clear()
    vectors = embedder.embed(texts)
    assert [r["input"] for r in server.requests] == [["t4", "t5"]]  # only what was missing is sent
    np.testing.assert_array_equal(vectors, np.stack([vector_for(t, 3072) for t in texts]))


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIEmbedder()


def test_plan_batches_respects_input_and_token_limits():
    assert plan_batches(["x"] * 5, max_inputs=2) == [(0, 2), (2, 4), (4, 5)]
    long = "word " * 3000  # ~5000 estimated tokens each
    assert plan_batches([long] * 5, max_tokens=12_000) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(ValueError, match="input limit"):
        plan_batches(["x" * 40_000])
