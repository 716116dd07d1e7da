"""Archive scoring end to end (`salesrl score`) as a benchmark: raw JSONL in, per-turn and per-conversation rows out.

Everything the command does is timed: reading and validating the records, the turn features and the offline
embeddings in worker processes, the jitted model (int8 by default, as `--quantized`), the confidence module, and
writing the rows. The archive is ``conversations`` simulator conversations as JSONL shards; the model is the default
model at ``dim`` with random weights and random confidence parameters of the default fit's shapes (`bench_model`;
speed does not depend on their values), exported as a run directory beside the cached arrays of 2,000 other simulator
conversations, its ``data.train``, so that the int8 form calibrates its activation scales there as a trained run's
does. The two variants, with the confidence columns and without, are alternated ``rounds`` times in this process's
children, as the command runs them; the figure of each is its fastest round.

Issue 14's bar: 10k turns/s with the confidence module (docs/benchmarks.md, "archive scoring").
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import jax

from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.bench.inference import bench_model
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.infer.archive import score_archive
from salesrl_jax.io.digest import tree_digest
from salesrl_jax.run.checkpoints import export_model
from salesrl_jax.run.confidence_store import confidence_directory, save_confidence
from salesrl_jax.run.config import TrainConfig
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import generate

CALIBRATION_CONVERSATIONS = 2_000


def export_bench_run(workdir: Path, dim: int, train_arrays: Path) -> Path:
    """`bench_model` at ``dim`` with its confidence parameters, written as a run directory that every command loads
    (``data.train`` = ``train_arrays``). Returns ``workdir``."""
    config = dataclasses.replace(TrainConfig(embedder=EmbedderConfig(kind="hashing", dim=dim)),
                                 data=dataclasses.replace(TrainConfig().data, train=train_arrays))
    model = bench_model(dim, config, confidence=True)
    params = jax.device_get(model.params)
    path = export_model(workdir, params, {"config": json.loads(config.to_json()),
                                          "embedder": dataclasses.asdict(model.identity),
                                          "features": list(FEATURE_NAMES), "embed_dim": dim})
    save_confidence(confidence_directory(path), model.confidence, model.identity, tree_digest(params),
                    {"benchmark": "random parameters of the default fit's shapes"})
    return workdir


def archive_throughput(conversations: int = 20_000, dim: int = 512, rounds: int = 2, quantized: bool = True,
                       workers: int | None = None) -> dict:
    """Turns/s of `score_archive` over a simulator archive of ``conversations``, with and without confidence (see
    the module docstring)."""
    if conversations < 1 or rounds < 1:
        raise ValueError(f"need at least one conversation and one round, got {conversations} and {rounds}")
    with tempfile.TemporaryDirectory(prefix="salesrl-bench-archive-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        generate(SimulatorConfig(num_conversations=conversations, seed=31), tmp / "archive", workers=workers)
        generate(SimulatorConfig(num_conversations=CALIBRATION_CONVERSATIONS, seed=21), tmp / "train",
                 workers=workers)
        embed_archive(tmp / "train", tmp / "train-arrays", EmbedderConfig(kind="hashing", dim=dim), workers=workers)
        run = export_bench_run(tmp / "run", dim, tmp / "train-arrays")
        setup_s = time.perf_counter() - start
        seconds: dict[str, list[float]] = {"confidence": [], "plain": []}
        turns = 0
        for _ in range(rounds):
            for variant in seconds:
                out = tmp / "scores" / f"{variant}.jsonl"
                start = time.perf_counter()
                result = score_archive(run, tmp / "archive", out, quantized=quantized, workers=workers,
                                       confidence=variant == "confidence")
                seconds[variant].append(time.perf_counter() - start)
                turns = result.turns
                shutil.rmtree(out.parent)
    best = {variant: min(times) for variant, times in seconds.items()}
    return {"conversations": conversations, "turns": turns, "dim": dim, "quantized": quantized, "rounds": rounds,
            "setup_s": setup_s, "seconds": seconds,
            "confidence_turns_per_s": turns / best["confidence"], "plain_turns_per_s": turns / best["plain"],
            "confidence_over_plain": best["plain"] / best["confidence"]}
