"""``salesrl score``: batch scoring of transcript archives of any size, resumable, exactly once.

The archive is streamed in chunks of ``chunk_conversations``. Worker processes embed (through
the cache, if one is given) and featurise chunk ``i + 1`` while this process predicts chunk ``i``
with the jitted packed-batch model (int8 x int8 when ``quantized``), so both cores work. Each
chunk's outputs are written as part files, atomically; a rerun after a kill skips the parts that
exist; when all are done they are joined, in order, into the outputs (atomically too) and the
parts are removed. Chunking depends only on the archive, so a resumed run's outputs are
byte-identical to an uninterrupted run's (tested).

Outputs (the format follows OUTPUT's extension, ``.jsonl`` or ``.parquet``):

* ``OUTPUT``: one row per turn: conversation_id, turn_index, speaker, probability, uncertainty, and with a model
  that has a confidence fit (`salesrl confidence`): confidence, expected_error, familiarity, p_low, p_high and
  low_confidence (confidence below the fit's threshold, 0.55 by default; `salesrl_jax.models.confidence`); with
  ``--guidance RUN`` (a guidance run on this model's encoder state, `salesrl_jax.guidance.inference`), the rep's
  next act as the policy learned in simulation recommends it: sim_next_act, sim_next_act_probability and
  sim_sale_if (per candidate act, the estimated conversion probability if played now), the same as a live
  `Scorer` session's (read them after a customer turn);
* ``OUTPUT`` with ``.conversations`` before the extension: one row per conversation: turns,
  final probability and uncertainty, peak probability and its turn, the whole trajectory, and
  the outcome when the archive has one;
* ``OUTPUT`` with ``.rejects.jsonl``: bad records, with file, location, id, field and reason.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable

import numpy as np

from salesrl_jax.arrays.build import EmbedWorker, archive_hash
from salesrl_jax.arrays.store import Part
from salesrl_jax.data.readers import ArchiveReader, RejectSink
from salesrl_jax.data.records import Conversation
from salesrl_jax.data.validation import Limits, reading_limits, reading_record
from salesrl_jax.embed.cache import CacheStats
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.io.atomic import atomic_path, remove_stale_temporaries, write_json_atomic
from salesrl_jax.io.digest import tree_digest
from salesrl_jax.io.lock import claim_output
from salesrl_jax.io.resumable_map import check_run_record, chunked, default_workers, resumable_map

# JAX and the model are imported inside the functions that use them: the embedding workers import this
# module to find `_encode_chunk`, and a worker that never predicts should not pay for loading JAX.

TURN_COLUMNS = ("conversation_id", "turn_index", "speaker", "probability", "uncertainty")
# One encoder for every row (json.dumps with options builds one per call); the rows are fresh trees of plain values.
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def output_paths(output: Path) -> dict[str, Path]:
    name = output.name
    for ext in (".jsonl", ".parquet"):
        if name.endswith(ext):
            stem = name[: -len(ext)]
            return {"turns": output, "conversations": output.with_name(f"{stem}.conversations{ext}"),
                    "rejects": output.with_name(f"{stem}.rejects.jsonl"), "done": output.with_name(f"{stem}.done.json"),
                    "parts": output.with_name(f"{stem}.parts"), "ext": Path(ext)}
    raise ValueError(f"{output}: the output must end in .jsonl or .parquet")


def score_records(part: Part, speakers: list[str], prediction: np.ndarray, uncertainty: np.ndarray,
                  confidence=None, guidance: np.ndarray | None = None) -> tuple[list[dict], list[dict]]:
    """Per-turn and per-conversation rows of one scored part (``confidence``: a `ConfidenceOutput` of its turns;
    ``guidance``: their `salesrl_jax.guidance.inference.guidance_arrays` rows)."""
    from salesrl_jax.models.confidence import VALUE_FIELDS  # here: worker processes import this module without JAX

    turns, conversations = [], []
    offsets = np.asarray(part.offsets)
    extra = ({name: np.round(np.asarray(getattr(confidence, name), np.float64), 6).tolist()
              for name in VALUE_FIELDS} if confidence is not None else {})
    low = np.asarray(confidence.low_confidence).tolist() if confidence is not None else None
    for c, conv_id in enumerate(part.ids):
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        probs = [round(float(p), 6) for p in prediction[lo:hi]]
        uncs = [round(float(u), 6) for u in uncertainty[lo:hi]]
        for t in range(hi - lo):
            row = {"conversation_id": conv_id, "turn_index": t, "speaker": speakers[lo + t],
                   "probability": probs[t], "uncertainty": uncs[t]}
            if extra:
                row.update({name: values[lo + t] for name, values in extra.items()}, low_confidence=low[lo + t])
            if guidance is not None:
                row.update(_guidance_columns(guidance[lo + t]))
            turns.append(row)
        peak = int(np.argmax(probs))
        outcome = int(part.outcome[c])
        summary = {"conversation_id": conv_id, "turns": hi - lo, "final_probability": probs[-1],
                   "final_uncertainty": uncs[-1], "peak_probability": probs[peak], "peak_turn": peak,
                   "trajectory": probs, "outcome": None if outcome < 0 else outcome}
        if extra:
            summary.update(final_confidence=extra["confidence"][hi - 1], final_p_low=extra["p_low"][hi - 1],
                           final_p_high=extra["p_high"][hi - 1])
        if guidance is not None:
            summary.update(final_sim_next_act=_guidance_columns(guidance[hi - 1])["sim_next_act"])
        conversations.append(summary)
    return turns, conversations


def _guidance_columns(row: np.ndarray) -> dict:
    from salesrl_jax.guidance.inference import as_guidance  # here: worker processes import this module without JAX

    g = as_guidance(row)
    return {"sim_next_act": g.next_act, "sim_next_act_probability": g.act_probability, "sim_sale_if": g.sale_if}


def _write_rows(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` to ``path`` atomically, as Parquet or JSON lines by its extension."""
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.writelines(_ROW_ENCODER.encode(row) + "\n" for row in rows)


def _join(parts: list[Path], out: Path) -> None:
    """Concatenate part files, in order, into ``out`` atomically."""
    with atomic_path(out) as tmp:
        if out.suffix == ".parquet":
            import pyarrow.parquet as pq

            writer = None
            for part in parts:
                table = pq.read_table(part)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        else:
            with open(tmp, "wb") as handle:
                for part in parts:
                    with open(part, "rb") as source:
                        shutil.copyfileobj(source, handle)


# --- the work of one chunk, in a worker process ---------------------------------------------

def _encode_chunk(worker: EmbedWorker, index: int, job: tuple[list[Conversation], bool]
                  ) -> tuple[int, Part, list[str], CacheStats]:
    conversations, int8_embeddings = job
    part, used = worker.encode(conversations, "float32")  # in memory only: keep full precision
    if int8_embeddings and not part.sparse:  # for the int8 model: quantized here, in parallel, a quarter of the bytes
        from salesrl_jax.infer.quantize import quantize_rows_np

        q, scale = quantize_rows_np(part.embeddings)
        part = dataclasses.replace(part, embeddings=q, embedding_scale=scale)
    speakers = [t.speaker for c in conversations for t in c.turns]
    return index, part, speakers, used


@dataclasses.dataclass
class ScoreResult:
    outputs: dict[str, Path]
    up_to_date: bool
    conversations: int
    turns: int
    rejected: int
    chunks_written: int
    chunks_reused: int
    cache: CacheStats | None

    def summary(self) -> str:
        if self.up_to_date:
            lines = [f"{self.outputs['turns']}: already scored with this model and input; nothing to do"]
        else:
            reused = f" ({self.chunks_reused} chunks reused from an interrupted run)" if self.chunks_reused else ""
            lines = [f"scored {self.conversations:,} conversations, {self.turns:,} turns{reused}"]
        lines.append(f"per turn          {self.outputs['turns']}")
        lines.append(f"per conversation  {self.outputs['conversations']}")
        lines.append(f"rejected          {self.rejected:,}" +
                     (f" (reasons in {self.outputs['rejects']})" if self.rejected else ""))
        if self.cache is not None:
            lines.append(str(self.cache))
        return "\n".join(lines)


def score_archive(model_path: str | os.PathLike[str], input_path: str | os.PathLike[str],
                  output: str | os.PathLike[str], *, quantized: bool = False, chunk_conversations: int = 2_000,
                  workers: int | None = None, cache_path: str | os.PathLike[str] | None = None,
                  strict: bool = False, rows: int = 4096, progress: Callable[[int], object] | None = None,
                  wait: bool = False, confidence: bool = True, engine: str = "local",
                  address: str | None = None, guidance: str | os.PathLike[str] | None = None,
                  label_key: str | None = None, speakers: Mapping[str, str] | Iterable[str] = ()) -> ScoreResult:
    """Score every turn of an archive with a trained model (see the module docstring). The output is claimed
    for the run (`salesrl_jax.io.lock`): another run on it makes this fail at once, or wait with ``wait``.
    ``confidence=False`` leaves out the confidence columns of a model that has a fit (about 1.5x faster).
    ``engine="ray"``: the chunks are embedded and scored by a pool of Ray actors (`salesrl_jax.io.ray_map`;
    ``address`` of a running cluster, or None to start a local one); the outputs are the local engine's, byte for
    byte. ``guidance``: a guidance run on this model's encoder state (``DIR`` or ``DIR@K``): adds the recommended
    next act per turn (see the module docstring). ``label_key`` (the outcome's field, dotted) and ``speakers``
    (roles of speaker names the aliases do not know) say how the archive reads
    (`salesrl_jax.data.validation.reading_limits`)."""
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    limits = reading_limits(label_key, speakers)  # a malformed --speaker pair fails before the output is claimed
    paths = output_paths(Path(output))
    with claim_output(paths["turns"], wait=wait):
        return _score_claimed(paths, model_path, input_path, quantized=quantized,
                              chunk_conversations=chunk_conversations, workers=workers, cache_path=cache_path,
                              strict=strict, rows=rows, progress=progress, with_confidence=confidence,
                              engine=engine, address=address, guidance=None if guidance is None else str(guidance),
                              limits=limits)


@dataclasses.dataclass
class ChunkScorer:
    """What scoring a chunk needs, loaded once per process (this one, or each Ray actor): the model (int8 when
    quantized), its jitted packed-batch predict, its confidence fit and its guidance policy."""

    model: object  # TrainedModel
    params: object
    predict: Callable
    confidence: object | None
    rows: int
    guidance: object | None = None  # `salesrl_jax.guidance.train.TrainedPolicy`

    @classmethod
    def load(cls, model_path, quantized: bool, with_confidence: bool, rows: int, guidance: str | None = None
             ) -> "ChunkScorer":
        from salesrl_jax.infer.quantize import int8_model
        from salesrl_jax.models.predict import shared_predict
        from salesrl_jax.run.trained_model import TrainedModel

        model = TrainedModel.load(model_path)
        model.require_compatible(model.config.embedder.build().identity, FEATURE_NAMES,
                                 f"the embedder of {model.directory}'s config")
        graphdef, params = model.graphdef, model.params
        if quantized:
            graphdef, params, _ = int8_model(model)
        confidence = model.confidence if with_confidence else None
        policy = None
        if guidance is not None:
            from salesrl_jax.guidance.inference import check_guidance_for
            from salesrl_jax.guidance.train import load_policy_spec

            policy = load_policy_spec(guidance)
            check_guidance_for(policy, model)
        # One compiled predictor per model structure in a process (`shared_predict`): scoring a second archive, or
        # the same one again, compiled the batch program afresh (2.4 s a run at the default size).
        if confidence is None and policy is None:
            return cls(model, params, shared_predict(graphdef), None, rows)
        if policy is None:
            return cls(model, params, shared_predict(graphdef, confidence_signals), confidence, rows)
        return cls(model, params, shared_predict(graphdef, guided_outputs(policy.graphdef)), confidence, rows, policy)

    def run_record(self, input_path, quantized: bool, chunk_conversations: int, strict: bool) -> dict:
        """What identifies a scoring run (a resumed run must not mix models, inputs or chunkings)."""
        return {"input_sha256": archive_hash(input_path), "model": str(self.model.directory),
                "model_params_sha256": tree_digest(self.params),
                "confidence_sha256": None if self.confidence is None else tree_digest(self.confidence),
                "guidance_sha256": None if self.guidance is None else tree_digest(self.guidance.params),
                "quantized": quantized, "chunk_conversations": chunk_conversations, "strict": strict}

    def write(self, part: Part, speakers: list[str], turn_path: Path, conv_path: Path) -> None:
        """Predict every turn of ``part`` and write its two part files (atomically; the turns file last, its
        presence marks the chunk done)."""
        from salesrl_jax.models.confidence import confidence_outputs
        from salesrl_jax.models.predict import predict_part

        args = None
        if self.confidence is not None or self.guidance is not None:
            args = (self.confidence, None if self.guidance is None else self.guidance.params)
        prediction, uncertainty, *extra = predict_part(self.predict, self.params, part,
                                                       np.arange(part.num_conversations), self.rows, args=args)
        _require_finite(part, prediction, uncertainty, self.model.directory)
        signals, guidance = extra[0] if extra else (None, None)
        scored = (confidence_outputs(self.confidence, prediction, uncertainty, signals,
                                     np.asarray(part.turn_index)) if signals is not None else None)
        turns, conversations = score_records(part, speakers, prediction, uncertainty, scored, guidance)
        _write_rows(conv_path, conversations)
        _write_rows(turn_path, turns)


def confidence_signals(out, inputs, args) -> tuple:
    """The `make_predict` extra of a scorer with a confidence fit and no guidance policy: ``(signals, None)`` for
    ``args = (confidence params, None)``; a module-level function, so `shared_predict` keys on it."""
    from salesrl_jax.models.confidence import signals_of

    return signals_of(out, inputs, args[0]), None


@functools.lru_cache(maxsize=16)
def guided_outputs(policy_graphdef) -> Callable:
    """The `make_predict` extra of a scorer with a guidance policy of this structure: ``(signals or None, guidance)``
    for ``args = (confidence params or None, policy params)``; one function per policy structure, so that
    `shared_predict` keys on it as on `confidence_signals`."""
    from salesrl_jax.guidance.inference import guidance_arrays
    from salesrl_jax.models.confidence import signals_of

    def extra(out, inputs, args):
        conf, policy_params = args
        return (None if conf is None else signals_of(out, inputs, conf),
                guidance_arrays(policy_graphdef, policy_params, out.state))

    return extra


def part_paths(parts_dir: Path, ext: str, index: int) -> tuple[Path, Path]:
    """The turns and conversations part files of chunk ``index``."""
    return parts_dir / f"turns-{index:05d}{ext}", parts_dir / f"conversations-{index:05d}{ext}"


class ScoreActor:
    """A scoring actor (`salesrl score --engine ray`): the model and the embedder, loaded once; a call embeds and
    scores one chunk, writing its part files (`ChunkScorer.write`)."""

    def __init__(self, *, model_path: str, quantized: bool, with_confidence: bool, rows: int, embedder, cache,
                 parts_dir: str, ext: str, guidance: str | None = None):
        self.scorer = ChunkScorer.load(model_path, quantized, with_confidence, rows, guidance)
        self.worker = EmbedWorker(embedder, cache)
        self.parts_dir, self.ext = Path(parts_dir), ext

    def __call__(self, index: int, job: tuple[list[Conversation], bool]) -> tuple[int, int, CacheStats]:
        _, part, speakers, used = _encode_chunk(self.worker, index, job)
        self.scorer.write(part, speakers, *part_paths(self.parts_dir, self.ext, index))
        return index, part.num_turns, used


def _score_claimed(paths: dict[str, Path], model_path, input_path, *, quantized: bool, chunk_conversations: int,
                   workers: int | None, cache_path, strict: bool, rows: int, progress, with_confidence: bool,
                   engine: str = "local", address: str | None = None, guidance: str | None = None,
                   limits: Limits = Limits()) -> ScoreResult:
    scorer = ChunkScorer.load(model_path, quantized, with_confidence, rows, guidance)
    embedder_config = scorer.model.config.embedder
    # The format is part of the run: `x.jsonl` and `x.parquet` share their sidecar files (`x.done.json`), and a
    # finished JSONL run once made the Parquet one report "already scored" and write nothing.
    run = {**scorer.run_record(input_path, quantized, chunk_conversations, strict), "format": str(paths["ext"]),
           **reading_record(limits)}
    parts_dir = paths["parts"]
    outputs = tuple(paths[k].name for k in ("turns", "conversations", "done"))
    if paths["done"].exists() and json.loads(paths["done"].read_text()).get("run") == run:
        # Finished: only what a kill after done.json could have left remains to be cleaned.
        shutil.rmtree(parts_dir, ignore_errors=True)
        remove_stale_temporaries(paths["turns"].parent, outputs)
        done = json.loads(paths["done"].read_text())
        return ScoreResult(paths, True, done["conversations"], done["turns"], done["rejected"], 0, 0, None)
    remove_stale_temporaries(paths["turns"].parent, outputs)
    parts_dir.mkdir(parents=True, exist_ok=True)
    check_run_record(parts_dir / "run.json", run, "a partial scoring run")
    remove_stale_temporaries(parts_dir)

    ext = str(paths["ext"])
    cache = str(cache_path) if cache_path is not None else None
    stats = CacheStats()
    counts = {"conversations": 0, "turns": 0}
    part_files: list[tuple[Path, Path]] = []

    def finish(result) -> None:
        index, part, speakers, used = result
        stats.hits += used.hits
        stats.misses += used.misses
        scorer.write(part, speakers, *part_paths(parts_dir, ext, index))
        if progress:
            progress(part.num_turns)

    def jobs(reader: ArchiveReader):
        for index, chunk in enumerate(chunked(reader, chunk_conversations)):  # strict: a bad record raises here
            counts["conversations"] += len(chunk)
            counts["turns"] += sum(c.num_turns for c in chunk)
            part_files.append(part_paths(parts_dir, ext, index))
            yield chunk, quantized

    def is_done(index: int, job) -> bool:
        return all(p.exists() for p in part_paths(parts_dir, ext, index))

    def reused(index: int, job) -> None:
        if progress:
            progress(sum(c.num_turns for c in job[0]))

    workers = default_workers(workers)
    with RejectSink(paths["rejects"]) as rejects:
        reader = ArchiveReader(input_path, strict=strict, rejects=rejects, limits=limits)
        if engine == "ray":
            from salesrl_jax.io.ray_map import map_on_ray

            def scored(index: int, turns: int, hits: int, misses: int) -> None:
                stats.hits += hits
                stats.misses += misses
                if progress:
                    progress(turns)

            mapped = map_on_ray(jobs(reader), is_done, reused, scored, actor=ScoreActor, actor_kwargs=dict(
                model_path=str(scorer.model.directory), quantized=quantized, with_confidence=with_confidence,
                rows=rows, embedder=embedder_config, cache=cache, parts_dir=str(parts_dir), ext=ext, guidance=guidance),
                workers=workers, address=address)
        else:
            mapped = resumable_map(jobs(reader), _encode_chunk, finish, is_done=is_done, skip=reused,
                                   setup=EmbedWorker, setup_args=(embedder_config, cache), workers=workers,
                                   in_flight=workers + 1)

    if not part_files:
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise ValueError(f"{input_path}: no valid conversations to score ({reader.stats.rejected} rejected; "
                         f"reasons in {paths['rejects']})")
    _join([t for t, _ in part_files], paths["turns"])
    _join([c for _, c in part_files], paths["conversations"])
    done = {"run": run, "conversations": counts["conversations"], "turns": counts["turns"],
            "rejected": reader.stats.rejected}
    write_json_atomic(paths["done"], done)
    shutil.rmtree(parts_dir)
    return ScoreResult(paths, False, counts["conversations"], counts["turns"], reader.stats.rejected,
                       mapped.computed, mapped.skipped, stats if cache is not None else None)


def _require_finite(part: Part, prediction: np.ndarray, uncertainty: np.ndarray, model: Path) -> None:
    """No output file ever holds NaN: a non-finite prediction stops the run, naming the conversation, before
    anything of its chunk is written."""
    bad = ~(np.isfinite(prediction) & np.isfinite(uncertainty))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        conversation = int(np.searchsorted(np.asarray(part.offsets), row, side="right") - 1)
        raise ValueError(f"the model at {model} predicted a non-finite probability for {int(bad.sum())} turns, first "
                         f"conversation {part.ids[conversation]!r} turn {row - int(part.offsets[conversation])}; "
                         "nothing of its chunk was written (check the model and the input's embeddings)")
