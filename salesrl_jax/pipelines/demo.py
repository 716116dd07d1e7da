"""The whole pipeline on embedded defaults, offline: what `salesrl demo` runs.

Generate synthetic training and test archives, validate one by reading it back, embed both with the
offline embedder, train the demo config (supervised, then PPO) and fit its confidence module, evaluate the
best checkpoint against the simulator's oracle (confidence and intervals included), and score raw transcripts with the int8 model, one conversation shown turn
by turn. Every step is a library call a notebook can make the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.configs.demo import get_config as demo_config
from salesrl_jax.data.readers import ArchiveReader, RejectSink
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.eval.confidence_fit import fit_confidence
from salesrl_jax.eval.evaluate import evaluate_model
from salesrl_jax.eval.report import format_tables
from salesrl_jax.infer.archive import score_archive
from salesrl_jax.run.config import with_overrides
from salesrl_jax.run.trained_model import TrainedModel
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import generate
from salesrl_jax.sim.summary import format_summary
from salesrl_jax.train.loop import train_and_evaluate

STEPS = 6


def run_demo(workdir: str | os.PathLike[str] = "runs/demo", num_conversations: int = 2_000, seed: int = 0,
             emit: Callable[[str], object] = print) -> Path:
    """Run the demo in ``workdir`` (the test archive is a quarter the size, from ``seed + 1``), ``emit``-ing
    what a person reads; returns the trained run's directory."""
    workdir = Path(workdir)
    train_data, test_data = workdir / "synthetic", workdir / "synthetic-test"
    num_test = max(num_conversations // 4, 100)
    emit(f"[1/{STEPS}] generate {num_conversations} training and {num_test} test conversations "
         f"-> {train_data}/, {test_data}/")
    result = generate(SimulatorConfig(num_conversations=num_conversations, seed=seed), train_data, fmt="parquet")
    generate(SimulatorConfig(num_conversations=num_test, seed=seed + 1), test_data, fmt="parquet")
    emit(format_summary(result))

    emit(f"\n[2/{STEPS}] validate {train_data}/ by reading it back")
    with RejectSink(workdir / "synthetic.rejects.jsonl") as rejects:
        reader = ArchiveReader(train_data, rejects=rejects)
        first = None
        for conv in reader:
            first = first or conv
    emit(f"read back         {reader.stats.conversations} conversations, {reader.stats.turns} turns")
    emit(rejects.summary())
    if first is not None:
        emit(f"\nfirst conversation ({first.id}, {first.industry}, outcome {first.outcome}):")
        for index, turn in enumerate(first.turns):
            emit(f"  {index + 1:>2} {turn.speaker:<8} oracle {turn.oracle_prob:.2f}  {turn.text}")

    arrays_dir, test_arrays_dir = workdir / "arrays", workdir / "arrays-test"
    emit(f"\n[3/{STEPS}] embed (offline hashing embedder) and featurise -> {arrays_dir}/, {test_arrays_dir}/")
    embedded = embed_archive(train_data, arrays_dir, EmbedderConfig(), chunk_conversations=1_000)
    embed_archive(test_data, test_arrays_dir, EmbedderConfig(), chunk_conversations=1_000)
    emit(embedded.summary())

    run_dir = workdir / "model"
    config = with_overrides(demo_config(), {"data.train": arrays_dir})
    emit(f"\n[4/{STEPS}] train ({config.pretrain.epochs} supervised epochs, then {config.ppo.updates} PPO "
         f"updates) -> {run_dir}/")
    emit(train_and_evaluate(config, run_dir).summary())
    if config.confidence.enabled:
        emit(fit_confidence(run_dir).summary())

    emit(f"\n[5/{STEPS}] evaluate the best checkpoint on the held-out test archive (oracle = the ceiling)")
    evaluation = evaluate_model(TrainedModel.load(run_dir), test_arrays_dir, run_dir / "eval-test")
    emit(format_tables(evaluation.tables))
    emit(f"\nreport with plots: {evaluation.report}")

    transcripts = workdir / "transcripts.jsonl"
    write_conversations(transcripts, ArchiveReader(test_data))
    scores = workdir / "scores.jsonl"
    emit(f"\n[6/{STEPS}] score raw transcripts {transcripts} with the int8 model -> {scores}")
    scored = score_archive(run_dir, transcripts, scores, quantized=True)
    emit(f"scored {scored.conversations:,} conversations, {scored.turns:,} turns; per conversation: "
         f"{scored.outputs['conversations']}")
    summary = json.loads(scored.outputs["conversations"].read_text().splitlines()[0])
    conversation = next(iter(ArchiveReader(test_data)))
    with open(scored.outputs["turns"], encoding="utf-8") as handle:
        rows = [json.loads(next(handle)) for _ in conversation.turns]
    emit(f"\n{summary['conversation_id']} turn by turn (P(sale) after each turn, with its interval and confidence "
         f"when the model has a confidence fit; outcome {summary['outcome']}):")
    for index, (turn, row) in enumerate(zip(conversation.turns, rows)):
        interval = (f" [{row['p_low']:.2f}, {row['p_high']:.2f}] confidence {row['confidence']:.2f}"
                    if "confidence" in row else "")
        emit(f"  {index + 1:>2} {turn.speaker:<8} P(sale) {row['probability']:.2f}{interval}  oracle "
             f"{turn.oracle_prob:.2f}  {turn.text[:60]}")
    return run_dir
