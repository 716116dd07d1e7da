"""``salesrl embed``: turn an archive into cached arrays, resumably and on every core.

The archive is read once, in order, and cut into chunks of ``chunk_conversations``; chunk ``i``
becomes ``part-i``. Worker processes embed and featurise chunks and write their parts
themselves (atomically), so the parent only reads and dispatches. A rerun after a kill skips
the parts that exist; a rerun after completion finds a matching manifest and does nothing. What
a part holds depends only on the chunk, never on the worker count, so output bytes do not
depend on ``workers``.

The build's arguments (source hash, embedder identity, dtype, chunk size) are recorded in
``build.json`` before the first part is written, so a resume with different arguments is refused
instead of silently mixing two builds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salesrl_jax.arrays.store import FORMAT_VERSION, MANIFEST, Part, TurnArrays, part_digest, part_name
from salesrl_jax.data.readers import ArchiveReader, RejectSink, archive_files
from salesrl_jax.data.records import Conversation
from salesrl_jax.data.validation import Limits, reading_limits, reading_record
from salesrl_jax.embed.base import Embedder
from salesrl_jax.embed.cache import CacheStats, cached_embedder
from salesrl_jax.embed.config import EmbedderConfig, resolve_embedder
from salesrl_jax.embed.ngrams import NgramHasher
from salesrl_jax.features.turn_features import FEATURE_DEFINITIONS, FEATURE_NAMES, conversation_features
from salesrl_jax.io.atomic import remove_stale_temporaries, write_json_atomic
from salesrl_jax.io.lock import claim_output
from salesrl_jax.io.resumable_map import check_run_record, chunked, default_workers, resumable_map

BUILD = "build.json"
EMBED_BATCH = 4096  # texts per embedder call: bounds a worker's transient memory


def archive_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 over every archive file's relative name and bytes, in a fixed order."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in archive_files(root):
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def encode_conversations(conversations: Sequence[Conversation], embedder: Embedder | NgramHasher,
                         dtype: str) -> Part:
    """Embed (or, for the sparse n-gram representation, hash) and featurise ``conversations`` into one part's
    arrays."""
    lengths = np.array([c.num_turns for c in conversations], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    texts = [turn.text for conv in conversations for turn in conv.turns]
    embeddings = np.empty((len(texts), 0), dtype=dtype)
    grams = {}
    if isinstance(embedder, NgramHasher):
        rows = embedder.grams(texts)
        width = max(int((rows.counts > 0).sum(axis=1).max(initial=0)), 1)  # the part's widest turn
        grams = {"gram_ids": rows.ids[:, :width], "gram_counts": rows.counts[:, :width],
                 "max_grams": embedder.max_grams}
    else:
        blocks = [embedder.embed(texts[start:start + EMBED_BATCH]).astype(dtype)
                  for start in range(0, len(texts), EMBED_BATCH)]
        if blocks:
            embeddings = np.concatenate(blocks)
    features = (np.concatenate([conversation_features(c.turns) for c in conversations])
                if texts else np.zeros((0, len(FEATURE_NAMES)), np.float32))
    industries = sorted({c.industry for c in conversations if c.industry is not None})
    code = {name: i for i, name in enumerate(industries)}
    return Part(
        embeddings=embeddings,
        features=features.astype(np.float32),
        is_customer=np.array([t.speaker == "customer" for c in conversations for t in c.turns], dtype=np.int8),
        turn_index=np.concatenate([np.arange(n, dtype=np.int16) for n in lengths]) if texts else np.zeros(0, np.int16),
        oracle_prob=np.array([np.nan if t.oracle_prob is None else t.oracle_prob
                              for c in conversations for t in c.turns], dtype=np.float32),
        offsets=offsets,
        outcome=np.array([-1 if c.outcome is None else c.outcome for c in conversations], dtype=np.int8),
        industry=np.array([code[c.industry] if c.industry is not None else -1 for c in conversations], dtype=np.int16),
        ids=tuple(c.id for c in conversations),
        industries=tuple(industries),
        **grams,
    )


# --- the work of one chunk, in a worker process ---------------------------------------------

class EmbedWorker:
    """A worker's embedder (behind the shared SQLite cache, if any), built once per process; counts cache use."""

    def __init__(self, embedder: EmbedderConfig, cache_path: str | None):
        self.embedder = cached_embedder(embedder, cache_path)

    def encode(self, conversations: Sequence[Conversation], dtype: str) -> tuple[Part, CacheStats]:
        """One part's arrays, and the cache hits and misses it took."""
        stats = getattr(self.embedder, "stats", None)
        before = dataclasses.replace(stats) if stats is not None else CacheStats()
        part = encode_conversations(conversations, self.embedder, dtype)
        after = stats if stats is not None else CacheStats()
        return part, CacheStats(hits=after.hits - before.hits, misses=after.misses - before.misses)


def _write_part(worker: EmbedWorker, index: int, job: tuple[list[Conversation], str, str]
                ) -> tuple[int, int, CacheStats]:
    conversations, out, dtype = job
    part, used = worker.encode(conversations, dtype)
    part.save(Path(out) / part_name(index))
    return index, part.num_turns, used


class EmbedActor:
    """An embedding actor (`salesrl embed --engine ray`): the embedder, built once; a call writes one chunk's
    cached-array part (`_write_part`)."""

    def __init__(self, *, embedder, cache):
        self.worker = EmbedWorker(embedder, cache)

    def __call__(self, index: int, job: tuple[list[Conversation], str, str]) -> tuple[int, int, CacheStats]:
        return _write_part(self.worker, index, job)


# --- the job -------------------------------------------------------------------------------

@dataclasses.dataclass
class EmbedResult:
    arrays: TurnArrays
    up_to_date: bool  # nothing needed doing
    parts_written: int
    parts_reused: int
    rejected: int
    cache: CacheStats | None

    def summary(self) -> str:
        out, arrays = self.arrays.path, self.arrays
        counts = arrays.manifest["counts"]
        lines = []
        if self.up_to_date:
            lines.append(f"{out}: already complete for this archive and embedder; nothing to do")
        else:
            lines.append(f"wrote {out}/: {self.parts_written} parts" +
                         (f" ({self.parts_reused} reused from an interrupted run)" if self.parts_reused else ""))
        lines.append(f"embedder          {arrays.identity.key} ({arrays.manifest['dtype']})")
        lines.append(f"conversations     {counts['conversations']:,} ({counts['labelled']:,} labelled, "
                     f"{counts['converted']:,} converted)")
        lines.append(f"turns             {counts['turns']:,} ({counts['turns_with_oracle']:,} with oracle probability)")
        if counts.get("turns_at_max_grams"):
            lines.append(f"long turns        {counts['turns_at_max_grams']:,} use all {arrays.max_grams} gram columns "
                         "(a longer turn keeps its most frequent grams; raise embedder.max_grams to keep all)")
        lines.append(f"rejected          {counts['rejected']:,}" +
                     (f" (reasons in {out / 'rejects.jsonl'})" if counts["rejected"] else ""))
        if self.cache is not None:
            lines.append(str(self.cache))
        return "\n".join(lines)


def embed_archive(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    embedder: EmbedderConfig = EmbedderConfig(),
    *,
    dtype: str = "float16",
    chunk_conversations: int = 10_000,
    workers: int | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    progress: Callable[[int], object] | None = None,
    label_key: str | None = None,
    speakers: Mapping[str, str] | Iterable[str] = (),
    wait: bool = False,
    engine: str = "local",
    address: str | None = None,
) -> EmbedResult:
    """Build (or finish, or confirm) the cached arrays of archive ``data`` in directory ``out``.

    Args:
      data: archive file or directory of shards.
      out: cache directory.
      embedder: which embedding space (``auto``: `resolve_embedder` decides from the archive).
      dtype: ``float16`` (half the disk, what training reads) or ``float32``.
      chunk_conversations: conversations per part (the unit of resumption and of streaming).
      workers: processes (default one per core; 1 runs in this process).
      cache_path: SQLite embedding cache shared across runs; None for no cache.
      progress: called with the number of turns done, as parts finish.
      label_key: the dotted field that holds the outcome (`Limits.label_key`); None for the usual names.
      speakers: roles of speaker names the usual aliases do not know (``{"SPEAKER_00": "rep"}`` or
        ``["SPEAKER_00=rep"]``; `Limits.speaker_names`). With ``label_key``, part of the build's record.
      wait: another run holding ``out`` makes this wait for it instead of failing at once (`claim_output`).
      engine: ``local`` (worker processes) or ``ray`` (a pool of Ray actors, `salesrl_jax.io.ray_map`; the
        same parts, byte for byte); ``address``: the Ray cluster to join (None: start a local one).
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    if chunk_conversations < 1:
        raise ValueError(f"chunk_conversations must be >= 1, got {chunk_conversations}")
    out = Path(out)
    limits = reading_limits(label_key, speakers)
    embedder = resolve_embedder(embedder, data, limits)  # auto: n-grams for small real archives, else hashing
    # Building an embedder makes no request (a remote one only checks that a key is set).
    identity = embedder.build().identity
    build = {
        "format_version": FORMAT_VERSION,
        "source_sha256": archive_hash(data),
        "embedder": dataclasses.asdict(identity),
        "dtype": dtype,
        "chunk_conversations": chunk_conversations,
        "features": list(FEATURE_NAMES),
        **reading_record(limits),
        **({"max_grams": embedder.max_grams} if embedder.kind == "ngrams" else {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    with claim_output(out, wait=wait):
        return _embed_claimed(data, out, embedder, build, dtype, chunk_conversations, workers, cache_path, progress,
                              limits, engine, address)


def _embed_claimed(data, out: Path, embedder: EmbedderConfig, build: dict, dtype: str, chunk_conversations: int,
                   workers: int | None, cache_path, progress, limits: Limits, engine: str = "local",
                   address: str | None = None) -> EmbedResult:
    check_run_record(out / BUILD, build, "cached arrays")
    if (out / MANIFEST).exists():
        arrays = TurnArrays.open(out)
        return EmbedResult(arrays, True, 0, len(arrays), arrays.manifest["counts"]["rejected"], None)
    remove_stale_temporaries(out)  # parts half-written by a killed run; never visible as parts

    cache = str(cache_path) if cache_path is not None else None
    stats = CacheStats()
    part_turns: dict[int, int] = {}
    part_convs: dict[int, int] = {}

    def finished(result: tuple[int, int, CacheStats]) -> None:
        index, turns, used = result
        part_turns[index] = turns
        stats.hits += used.hits
        stats.misses += used.misses
        if progress:
            progress(turns)

    def reused(index: int, job) -> None:
        part_turns[index] = sum(c.num_turns for c in job[0])
        if progress:
            progress(part_turns[index])

    def jobs(reader: ArchiveReader):
        for index, chunk in enumerate(chunked(reader, chunk_conversations)):
            part_convs[index] = len(chunk)
            yield chunk, str(out), dtype

    def is_done(index: int, job) -> bool:
        return (out / part_name(index)).is_dir()

    with RejectSink(out / "rejects.jsonl") as rejects:
        reader = ArchiveReader(data, rejects=rejects, limits=limits)
        if engine == "ray":
            from salesrl_jax.io.ray_map import map_on_ray

            counts = map_on_ray(jobs(reader), is_done, reused,
                                lambda index, turns, hits, misses: finished((index, turns, CacheStats(hits, misses))),
                                actor=EmbedActor,
                                actor_kwargs=dict(embedder=embedder, cache=cache),
                                workers=default_workers(workers), address=address)
        else:
            counts = resumable_map(jobs(reader), _write_part, finished, is_done=is_done, skip=reused,
                                   setup=EmbedWorker, setup_args=(embedder, cache), workers=workers)

    # The manifest appears last: its presence means complete.
    source = {"path": str(data), "sha256": build["source_sha256"]}
    write_json_atomic(out / MANIFEST, arrays_manifest(out, build, part_convs, part_turns, reader.stats.rejected,
                                                      source))
    return EmbedResult(TurnArrays.open(out), False, counts.computed, counts.skipped, reader.stats.rejected,
                       stats if cache is not None else None)


def arrays_manifest(out: Path, build: dict, part_convs: dict[int, int], part_turns: dict[int, int], rejected: int,
                    source: dict) -> dict:
    """The manifest of the parts in ``out`` (counts and feature statistics read from them); ``build`` names the
    embedder and dtype, ``source`` where the conversations came from."""
    count = np.zeros(len(FEATURE_NAMES))
    total = np.zeros(len(FEATURE_NAMES))
    total_sq = np.zeros(len(FEATURE_NAMES))
    labelled = converted = with_oracle = full_rows = 0
    for index in sorted(part_convs):
        part = Part.load(out / part_name(index))
        if part.sparse:
            full_rows += int(((np.asarray(part.gram_counts) > 0).sum(axis=1) >= build["max_grams"]).sum())
        features = np.asarray(part.features, dtype=np.float64)
        total += features.sum(0)
        total_sq += (features ** 2).sum(0)
        count += len(features)
        outcome = np.asarray(part.outcome)
        labelled += int((outcome >= 0).sum())
        converted += int((outcome == 1).sum())
        with_oracle += int(np.isfinite(part.oracle_prob).sum())
    n = np.maximum(count, 1)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0))
    return {
        "format_version": FORMAT_VERSION,
        "embedder": build["embedder"],
        "dtype": build["dtype"],
        **({"max_grams": build["max_grams"]} if "max_grams" in build else {}),
        "features": {
            "names": list(FEATURE_NAMES),
            "definitions": FEATURE_DEFINITIONS,
            # Fixed transforms bound every feature to about [-1, 1], so the model reads them as
            # they are; these statistics are for inspecting a data set, not for normalising it.
            "mean": mean.round(6).tolist(),
            "std": std.round(6).tolist(),
        },
        "counts": {
            "conversations": sum(part_convs.values()),
            "turns": sum(part_turns.values()),
            "labelled": labelled,
            "converted": converted,
            "turns_with_oracle": with_oracle,
            "rejected": rejected,
            # Sparse n-gram arrays: turns with every one of max_grams columns used (a longer turn lost its rarest).
            **({"turns_at_max_grams": full_rows} if "max_grams" in build else {}),
        },
        "parts": [{"name": part_name(i), "conversations": part_convs[i], "turns": part_turns[i],
                   "sha256": part_digest(out / part_name(i))} for i in sorted(part_convs)],
        "source": source,
    }

