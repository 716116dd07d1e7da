"""A bank of rendered utterances per dialogue act, embedded once: the text of observation view "model".

The simulator's text grammar (`salesrl_jax.sim.text.render_turn`) renders ``variants`` utterances for every
(industry, rep act) and every (industry, customer act, interest level) (the grammar's elaboration depends on the
customer's interest), with the simulator's noise and ambiguity. Each is embedded by the conversion model's own
embedder (dense vectors, or n-gram bags for a sparse-text model) and summarised by the statistics the turn
features read (`salesrl_jax.features.turn_features.text_stats`). The environment then draws one of the
``variants`` utterances of the act played, as the simulator draws one rendering.

Built deterministically from ``seed``; `model_embedder` puts an API embedder behind an embedding cache, so the
bank is embedded once.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np

from salesrl_jax.embed.base import Embedder
from salesrl_jax.embed.ngrams import NgramHasher
from salesrl_jax.features.turn_features import text_stats
from salesrl_jax.sim import dynamics as sim
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.industries import BY_NAME
from salesrl_jax.sim.text import conversation_slots, render_turn

STAT_FIELDS = ("words", "questions", "sentences", "sentiment", "objection", "buying")


@dataclasses.dataclass(frozen=True)
class UtteranceBank:
    """``N`` utterances and where each act's variants sit (numpy)."""

    texts: tuple[str, ...]  # [N]
    stats: np.ndarray  # [N, len(STAT_FIELDS)] float32
    embeddings: np.ndarray | None  # [N, D] float32 (dense embedders)
    gram_ids: np.ndarray | None  # [N, K] int32 (n-gram bags)
    gram_counts: np.ndarray | None  # [N, K] float32
    rep_rows: np.ndarray  # [industries, R, V] int32 row of each rep act's variant
    customer_rows: np.ndarray  # [industries, C, LEVELS, V] int32 row of each customer act's variant per interest
    industries: tuple[str, ...]


def build_bank(simulator: SimulatorConfig, embedder: Embedder, variants: int = 8, seed: int = 0) -> UtteranceBank:
    """Render and embed the bank of ``simulator``'s included industries (see the module docstring)."""
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    rng = random.Random(seed)
    names = simulator.included_industries
    texts: list[str] = []

    def render(industry, act: str, customer: bool, level: int) -> int:
        slots = conversation_slots(rng, industry)  # fresh slots per utterance: products, names, prices vary
        texts.append(render_turn(rng, act, industry, slots, customer=customer, interest=level,
                                 noise=simulator.noise, ambiguity=simulator.ambiguity))
        return len(texts) - 1

    rep_rows = np.empty((len(names), sim.R, variants), np.int32)
    customer_rows = np.empty((len(names), sim.C, sim.LEVELS, variants), np.int32)
    for i, name in enumerate(names):
        industry = BY_NAME[name]
        for a, act in enumerate(sim.REP_ACTS):
            rep_rows[i, a] = [render(industry, act, False, 3) for _ in range(variants)]
        for c, act in enumerate(sim.CUSTOMER_ACTS):
            for level in range(sim.LEVELS):
                customer_rows[i, c, level] = [render(industry, act, True, level) for _ in range(variants)]
    stats = np.array([[getattr(s, f) for f in STAT_FIELDS] for s in map(text_stats, texts)], np.float32)
    embeddings = gram_ids = gram_counts = None
    if isinstance(embedder, NgramHasher):
        grams = embedder.grams(texts)
        gram_ids, gram_counts = np.asarray(grams.ids, np.int32), np.asarray(grams.counts, np.float32)
    else:
        embeddings = np.concatenate([np.asarray(embedder.embed(texts[s:s + 1024]), np.float32)
                                     for s in range(0, len(texts), 1024)])
    return UtteranceBank(tuple(texts), stats, embeddings, gram_ids, gram_counts, rep_rows, customer_rows,
                         tuple(names))


def model_embedder(config_embedder, cache: str | Path | None) -> Embedder:
    """The model's embedder, behind a SQLite cache at ``cache`` when it calls an API."""
    embedder = config_embedder.build()
    if cache is not None and config_embedder.is_remote:
        from salesrl_jax.embed.cache import CachedEmbedder, EmbeddingCache

        embedder = CachedEmbedder(embedder, EmbeddingCache(cache))
    return embedder
