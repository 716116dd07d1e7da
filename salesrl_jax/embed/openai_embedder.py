"""OpenAI / Azure OpenAI embeddings through the official ``openai`` client (the paper's setup).

Retries with exponential backoff on rate limits (honouring ``Retry-After``), server errors,
timeouts and connection errors are the client's own (``max_retries``); this module adds
batching within the API's limits and errors that never show the key.

Every response is validated before a vector is used (and so before any is cached): one vector per
input, every index exactly once, the right dimension, finite values. A response that fails any of
these (or is not a JSON embeddings body at all, an HTML error page say) is an `EmbeddingRequestError`
naming the batch; nothing of that batch is returned or cached.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from salesrl_jax.embed.base import EmbedderIdentity

MAX_INPUTS_PER_REQUEST = 2048  # the embeddings API's limit on inputs per request
MAX_TOKENS_PER_REQUEST = 300_000  # the API's limit on total tokens per request
MAX_TOKENS_PER_INPUT = 8191
DIMENSIONS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}


def estimate_tokens(text: str) -> int:
    """An upper-leaning token estimate (~3 characters per token for English; real BPE averages ~4)."""
    return len(text) // 3 + 1


def plan_batches(texts: Sequence[str], max_inputs: int = MAX_INPUTS_PER_REQUEST,
                 max_tokens: int = MAX_TOKENS_PER_REQUEST) -> list[tuple[int, int]]:
    """Split ``texts`` into consecutive ``[start, end)`` ranges within the per-request limits."""
    batches, start, tokens = [], 0, 0
    for i, text in enumerate(texts):
        cost = estimate_tokens(text)
        if cost > MAX_TOKENS_PER_INPUT:
            raise ValueError(f"text {i} is about {cost} tokens, over the {MAX_TOKENS_PER_INPUT}-token input limit "
                             "of the embeddings API; shorten it (the data layer's max_turn_chars limit does this)")
        if i > start and (i - start >= max_inputs or tokens + cost > max_tokens):
            batches.append((start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(texts):
        batches.append((start, len(texts)))
    return batches


class EmbeddingRequestError(RuntimeError):
    """An embeddings request failed for good (after the client's retries)."""


class OpenAIEmbedder:
    """Embeddings from OpenAI or Azure OpenAI.

    Args:
      model: embedding model (Azure: the deployment name).
      dimensions: output dimension (``text-embedding-3-*`` can shorten vectors); the model's full size if None.
      api_key: defaults to ``OPENAI_API_KEY`` (Azure: ``AZURE_OPENAI_API_KEY``).
      base_url: a compatible endpoint (tests point it at a local server).
      azure_endpoint, api_version: use Azure OpenAI instead.
      max_retries, timeout_s: passed to the client, which retries 408/409/429/5xx, timeouts and
        connection errors with exponential backoff and honours ``Retry-After``.
    """

    VERSION = "1"

    def __init__(self, model: str = "text-embedding-3-large", dimensions: int | None = None, *,
                 api_key: str | None = None, base_url: str | None = None, azure_endpoint: str | None = None,
                 api_version: str = "2024-10-21", max_retries: int = 6, timeout_s: float = 60.0,
                 max_inputs: int = MAX_INPUTS_PER_REQUEST):
        import openai

        self.model = model
        self.dim = dimensions or DIMENSIONS.get(model)
        if self.dim is None:
            raise ValueError(f"unknown output size of model {model!r}: pass dimensions=")
        self._send_dimensions = dimensions is not None
        self.max_inputs = max_inputs
        if azure_endpoint:
            key = api_key or os.environ.get("AZURE_OPENAI_API_KEY")
            if not key:
                raise ValueError("Azure OpenAI needs an API key: set AZURE_OPENAI_API_KEY or pass api_key")
            self._client = openai.AzureOpenAI(api_key=key, azure_endpoint=azure_endpoint, api_version=api_version,
                                              max_retries=max_retries, timeout=timeout_s)
            kind = "azure-openai"
        else:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                raise ValueError("OpenAI embeddings need an API key: set OPENAI_API_KEY or pass api_key "
                                 "(the offline default embedder needs none)")
            self._client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout_s)
            kind = "openai"
        # The identity names the space, never the key or the endpoint.
        self.identity = EmbedderIdentity(kind, model, self.dim, self.VERSION)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start, end in plan_batches(texts, self.max_inputs):
            kwargs = {"dimensions": self.dim} if self._send_dimensions else {}
            try:
                response = self._client.embeddings.create(model=self.model, input=list(texts[start:end]), **kwargs)
            except openai.APIStatusError as err:
                raise EmbeddingRequestError(
                    f"embeddings request for texts {start}-{end - 1} failed with HTTP {err.status_code} "
                    f"after retries ({type(err).__name__})") from None
            except openai.APIConnectionError as err:
                raise EmbeddingRequestError(
                    f"embeddings request for texts {start}-{end - 1} failed: {type(err).__name__} "
                    "(no answer in time, after retries)") from None
            except (openai.APIResponseValidationError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise EmbeddingRequestError(
                    f"embeddings request for texts {start}-{end - 1} returned a malformed body "
                    f"({type(err).__name__})") from None
            out[start:end] = self._vectors(response, start, end)
        return out

    def _vectors(self, response, start: int, end: int) -> np.ndarray:
        """The ``[end - start, dim]`` vectors of one response, in input order, after checking every one."""
        where = f"embeddings request for texts {start}-{end - 1}"
        data = getattr(response, "data", None)
        if not isinstance(data, list):
            raise EmbeddingRequestError(f"{where} returned a body without a list of embeddings "
                                        f"({type(response).__name__}: not an embeddings response)")
        if len(data) != end - start:
            raise EmbeddingRequestError(f"{where} returned {len(data)} vectors for {end - start} inputs")
        indices = [getattr(item, "index", None) for item in data]
        if sorted(i for i in indices if isinstance(i, int)) != list(range(end - start)):
            raise EmbeddingRequestError(f"{where} returned indices that do not cover each input exactly once "
                                        f"(expected 0-{end - start - 1}, got {sorted(map(str, indices))[:8]}...)")
        block = np.zeros((end - start, self.dim), dtype=np.float32)
        for item in data:
            try:
                vector = np.asarray(item.embedding, dtype=np.float32)
            except (TypeError, ValueError):
                raise EmbeddingRequestError(f"{where} returned a non-numeric vector for input "
                                            f"{start + item.index}") from None
            if vector.shape != (self.dim,):
                raise EmbeddingRequestError(f"{where} returned a vector of shape {vector.shape} for input "
                                            f"{start + item.index}, expected ({self.dim},)")
            if not np.isfinite(vector).all():
                raise EmbeddingRequestError(f"{where} returned a vector with NaN or infinite values for input "
                                            f"{start + item.index}")
            block[item.index] = vector
        return block
