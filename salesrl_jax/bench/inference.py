"""Inference benchmarks: batch throughput float32 vs int8, streaming latency, and the per-turn loop baseline.

All variants of one table run in this process, on the same inputs, so their ratios are meaningful
on a noisy machine. Weights are random (speed does not depend on their values); shapes are the
default model's at each embedding dimension.
"""

from __future__ import annotations

import dataclasses
import random
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.bench.timing import interleaved_times
from salesrl_jax.embed.base import EmbedderIdentity
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.embed.hashing import HashingEmbedder
from salesrl_jax.embed.ngrams import NGRAM_BUCKETS, NgramHasher
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.infer.quantize import activation_ranges, quantize_params, quantize_rows_np
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.models.agent import SalesAgent
from salesrl_jax.models.confidence import KEY_SPAN, ConfidenceParams, confidence_outputs, signals_of
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.models.layers import Int8Dot
from salesrl_jax.models.predict import make_predict
from salesrl_jax.run.config import ConfidenceConfig, TrainConfig
from salesrl_jax.run.trained_model import TrainedModel

TURNS_PER_CONVERSATION = 10


def random_inputs(rows: int, dim: int, seed: int = 0) -> TurnInputs:
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(rows, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    features = rng.uniform(-1, 1, size=(rows, len(FEATURE_NAMES))).astype(np.float32)
    features[:, 0] = rng.integers(0, 2, rows)
    starts = np.arange(rows) % TURNS_PER_CONVERSATION == 0
    return TurnInputs(jnp.asarray(embeddings), jnp.asarray(features), jnp.asarray(starts), jnp.ones(rows, bool))


def bench_confidence(state_dim: int, dim: int, config: ConfidenceConfig = ConfidenceConfig(),
                     buckets: int = 20) -> ConfidenceParams:
    """Confidence parameters of the default fit's shapes (state bank, dense text bank, conformal intervals over
    ``buckets`` turn buckets), random values: speed does not depend on them."""
    rng = np.random.default_rng(0)
    text_bank = rng.normal(size=(config.text_bank_size, config.text_dim)).astype(np.float32)
    text_bank /= np.linalg.norm(text_bank, axis=1, keepdims=True)
    bank = rng.normal(size=(config.bank_size, state_dim)).astype(np.float32)
    keys = np.sort(np.concatenate([b * KEY_SPAN + rng.normal(size=300) for b in range(buckets)])).astype(np.float32)
    return ConfidenceParams(
        bucket_starts=np.arange(1, buckets + 1, dtype=np.int32),
        bank=bank, bank_norms=np.sum(bank * bank, -1), gram_seen=np.zeros(1, np.float32),
        text_projection=(rng.normal(size=(dim, config.text_dim)) / np.sqrt(config.text_dim)).astype(np.float32),
        text_bank=text_bank, novelty_loc=np.zeros((buckets, 2), np.float32),
        novelty_scale=np.ones((buckets, 2), np.float32), novelty_keys=keys,
        novelty_end=np.arange(1, buckets + 1, dtype=np.int32) * 300, novelty_count=np.full(buckets, 300, np.int32),
        error_weights=np.array([0.0, 1.0, 0.1, 0.01, 0.01, 0.0], np.float32),
        familiarity_level=np.float32(config.familiarity_level), low_threshold=np.float32(config.low_threshold),
        interval_level=np.float32(config.interval_level),
        interval_scale_weights=np.array([0.02, 0.1, 0.5, 0.01, 0.01, 0.0], np.float32),
        interval_quantile=np.full(buckets, 1.6, np.float32), venn_keys=np.zeros(1, np.float32),
        venn_low=np.zeros(buckets + 1, np.float32), venn_high=np.ones(buckets + 1, np.float32),
        text="dense", interval="conformal")


def bench_model(dim: int, config: TrainConfig | None = None, confidence: bool = False) -> TrainedModel:
    """A randomly initialised default model, packaged like a loaded checkpoint (with random confidence parameters
    of the default fit's shapes when ``confidence``)."""
    config = config or TrainConfig(embedder=EmbedderConfig(kind="hashing", dim=dim))
    local = config.embedder.kind in ("hashing", "ngrams")
    graphdef, params = nnx.split(SalesAgent(config.model, dim, rngs=nnx.Rngs(0),
                                            sparse_text=config.embedder.kind == "ngrams"))
    model = object.__new__(TrainedModel)
    model.directory, model.meta, model.config = None, {}, config
    model.identity = config.embedder.build().identity if local else EmbedderIdentity(
        config.embedder.kind, config.embedder.model, dim, "1")
    model.feature_names, model.graphdef, model.params = tuple(FEATURE_NAMES), graphdef, params
    model._confidence = (bench_confidence(config.model.state_dim, dim) if confidence else None,)
    return model


def bench_int8(model: TrainedModel, dim: int, dot: Int8Dot | None = None):
    """The model's int8 form, its activation scales calibrated on random inputs like the benchmark's."""
    ranges = activation_ranges(model.graphdef, model.params, [random_inputs(4096, dim, seed=1)])
    return quantize_params(model.params, model.config.model, dim, ranges, dot)


INT8_VARIANTS = ("int8_int32", "int8_bf16", "int8_embeddings")


def batch_throughput(dims=(512, 3072), batch_sizes=(1, 32, 1024, 16384), min_seconds: float = 1.0) -> list[dict]:
    """Turns/s of jitted batch prediction, float32 against int8, at each dim and batch size.

    int8 runs with calibrated activation scales and each way of summing the int8 products
    (`salesrl_jax.models.layers`): ``int8_int32`` (int32 accumulation), ``int8_bf16`` (the same integers
    on bf16 dot units), and ``int8_embeddings``: the default way (`default_int8_dot`) fed embeddings
    quantized per row upstream, as `salesrl score --quantized` does. The variants of one row are timed
    in interleaved rounds (`interleaved_times`), so their ratios hold on a noisy machine.
    """
    from salesrl_jax.models.layers import default_int8_dot

    rows = []
    for dim in dims:
        model = bench_model(dim)
        programs = {"float32": (make_predict(model.graphdef), model.params)}
        for dot in ("int32", "bf16"):
            graphdef, params = bench_int8(model, dim, dot)
            programs[f"int8_{dot}"] = (make_predict(graphdef), params)
        programs["int8_embeddings"] = programs[f"int8_{default_int8_dot()}"]
        for batch in batch_sizes:
            inputs = random_inputs(batch, dim)
            q, scale = quantize_rows_np(np.asarray(inputs.embeddings))
            int8_inputs = inputs.replace(embeddings=jnp.asarray(q), embedding_scale=jnp.asarray(scale))
            variants = {name: (predict, (params, int8_inputs if name == "int8_embeddings" else inputs))
                        for name, (predict, params) in programs.items()}
            compile_s, times = interleaved_times(variants, min_seconds=min_seconds)
            row = {"dim": dim, "batch": batch, "int8_dot_default": default_int8_dot()}
            for name in variants:
                row[f"{name}_turns_per_s"] = batch / float(np.median(times[name]))
                row[f"{name}_compile_s"] = compile_s[name]
            for name in INT8_VARIANTS:
                row[f"{name}_over_float32"] = row[f"{name}_turns_per_s"] / row["float32_turns_per_s"]
            rows.append(row)
    return rows


def _sample_turns(n: int) -> list[tuple[str, str]]:
    from salesrl_jax.sim.config import SimulatorConfig
    from salesrl_jax.sim.generate import calibrate_outcome_bias, simulate

    config = SimulatorConfig()
    turns = []
    for conv in simulate(config, calibrate_outcome_bias(config), np.random.default_rng(0), random.Random(0), 0,
                         n // 8 + 10):
        turns.extend((t.speaker, t.text) for t in conv.turns)
    return turns[:n]


def _percentiles(seconds: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(seconds, 50) * 1e3), "p99_ms": float(np.percentile(seconds, 99) * 1e3),
            "turns_per_s": float(len(seconds) / seconds.sum())}


def streaming_latency(turns: int = 3000) -> list[dict]:
    """Per-turn latency of the streaming scorer: embedding cached (3072-d; with and without the confidence module),
    and with the offline embedder (512-d)."""
    rows = []
    for dim, quantized, confidence in ((3072, False, False), (3072, False, True), (3072, True, False),
                                       (3072, True, True)):
        model = bench_model(dim, confidence=confidence)
        scorer = Scorer(model, HashingEmbedder(dim), quantized=quantized)
        rows.append({"case": f"embedding cached, {dim}-d" + (", int8 (dequantized at load)" if quantized else "")
                     + (", with confidence" if confidence else ""),
                     **_percentiles(time_embedded(scorer, random_inputs(turns, dim)))})
    text_turns = _sample_turns(turns)
    scorer = Scorer(bench_model(512), HashingEmbedder(512))
    rows.append({"case": "offline embedder + features included, 512-d", **_time_sessions(scorer, text_turns)})
    # The sparse text path: hashing the turn's n-grams, the features and the embedding bag, all in the call.
    ngrams = dataclasses.replace(TrainConfig(), embedder=EmbedderConfig(kind="ngrams", dim=NGRAM_BUCKETS))
    scorer = Scorer(bench_model(NGRAM_BUCKETS, ngrams), NgramHasher(NGRAM_BUCKETS))
    rows.append({"case": "n-gram bag (configs/ngrams.py) + hashing + features included",
                 **_time_sessions(scorer, text_turns)})
    return rows


def time_embedded(scorer: Scorer, inputs: TurnInputs) -> np.ndarray:
    """Seconds of ``scorer.score_embedded`` per row of ``inputs`` (embeddings cached upstream), a new session every
    `TURNS_PER_CONVERSATION` turns; the first call, which compiles, is made and not timed."""
    embeddings, features = np.asarray(inputs.embeddings), np.asarray(inputs.features)
    session = scorer.session()
    scorer.score_embedded(session, embeddings[0], features[0])  # compile
    seconds = np.empty(len(embeddings))
    for i in range(len(embeddings)):
        if i % TURNS_PER_CONVERSATION == 0:
            session = scorer.session()
        start = time.perf_counter()
        scorer.score_embedded(session, embeddings[i], features[i])
        seconds[i] = time.perf_counter() - start
    return seconds


def _time_sessions(scorer: Scorer, text_turns: list[tuple[str, str]]) -> dict[str, float]:
    """Percentiles of ``session.add_turn`` over raw turns, a new session every `TURNS_PER_CONVERSATION` turns."""
    session = scorer.session()
    session.add_turn(*text_turns[0])  # compile
    seconds = np.empty(len(text_turns))
    for i, (speaker, text) in enumerate(text_turns):
        if i % TURNS_PER_CONVERSATION == 0:
            session = scorer.session()
        start = time.perf_counter()
        session.add_turn(speaker, text)
        seconds[i] = time.perf_counter() - start
    return _percentiles(seconds)


def loop_baseline(dim: int = 3072, turns: int = 3000, batch: int = 1024) -> dict:
    """The incumbent's way (one turn at a time from a Python loop) against batch scoring, same model, same run."""
    model = bench_model(dim)
    scorer = Scorer(model, HashingEmbedder(dim))
    inputs = random_inputs(turns, dim)
    embeddings, features = np.asarray(inputs.embeddings), np.asarray(inputs.features)
    session = scorer.session()
    scorer.score_embedded(session, embeddings[0], features[0])
    start = time.perf_counter()
    for i in range(turns):
        if i % TURNS_PER_CONVERSATION == 0:
            session = scorer.session()
        scorer.score_embedded(session, embeddings[i], features[i])
    loop_rate = turns / (time.perf_counter() - start)
    q_graphdef, q_params = bench_int8(model, dim)
    batch_inputs = random_inputs(batch, dim)
    _, times = interleaved_times({"float32": (make_predict(model.graphdef), (model.params, batch_inputs)),
                                  "int8": (make_predict(q_graphdef), (q_params, batch_inputs))})
    batch_rate = batch / float(np.median(times["float32"]))
    int8_rate = batch / float(np.median(times["int8"]))
    return {"dim": dim, "loop_turns_per_s": loop_rate, "batch": batch, "batch_float32_turns_per_s": batch_rate,
            "batch_int8_turns_per_s": int8_rate, "float32_speedup": batch_rate / loop_rate,
            "int8_speedup": int8_rate / loop_rate}


def confidence_overhead(dim: int = 3072, batch: int = 1024, min_seconds: float = 1.0) -> dict:
    """Batch turns/s with and without the confidence module's signals (state and text banks), same model, timed in
    interleaved rounds; the host-side combination (`confidence_outputs`) timed on the same batch."""
    model = bench_model(dim, confidence=True)
    confidence = model.confidence
    inputs = random_inputs(batch, dim)
    with_signals = make_predict(model.graphdef, extra=signals_of)
    _, times = interleaved_times({"plain": (make_predict(model.graphdef), (model.params, inputs)),
                                  "confidence": (with_signals, (model.params, inputs, confidence))},
                                 min_seconds=min_seconds)
    prediction, uncertainty, signals = with_signals(model.params, inputs, confidence)
    turn_index = np.arange(batch) % TURNS_PER_CONVERSATION
    args = (confidence, np.asarray(prediction), np.asarray(uncertainty), jax.tree.map(np.asarray, signals),
            turn_index)
    confidence_outputs(*args)  # compile
    start, rounds = time.perf_counter(), 20
    for _ in range(rounds):
        confidence_outputs(*args)
    combine_s = (time.perf_counter() - start) / rounds
    plain = batch / float(np.median(times["plain"]))
    signals_rate = batch / float(np.median(times["confidence"]))
    total = batch / (batch / signals_rate + combine_s)
    return {"dim": dim, "batch": batch, "plain_turns_per_s": plain, "confidence_turns_per_s": total,
            "signals_only_turns_per_s": signals_rate, "confidence_over_plain": total / plain}
