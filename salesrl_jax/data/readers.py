"""Streaming readers for conversation archives: JSONL (plain or .gz), CSV and Parquet.

Every reader yields strict `Conversation`s one at a time (a 1.2M-conversation
archive is never held in memory) and hands each bad record, with its file,
line or row, id and field, to a `RejectSink`; in strict mode the first bad
record raises `BadRecordError` instead.

CSV and flat Parquet hold one row per turn (``conversation_id, turn_index,
speaker, text, [start_time, duration, outcome, industry, product, act,
oracle_prob, metadata]``); a conversation's rows must be contiguous.
Parquet may also hold one row per conversation with a ``turns`` list column.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from salesrl_jax.data.records import Conversation
from salesrl_jax.data.validation import (
    ID_KEYS,
    BadRecordError,
    FieldError,
    Limits,
    RecordProblem,
    conversation_from_mapping,
    record_id_of,
    truncate_raw,
)

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".jsonl.gz": "jsonl", ".ndjson.gz": "jsonl", ".json.gz": "jsonl",
    ".csv": "csv", ".csv.gz": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}
# Files a directory archive may hold beside its shards that are not shards.
_NOT_SHARDS = ("rejects", "manifest")
_ROW_TURN_KEYS = ("turn_index", "turn", "index", "position")
_ROW_TURN_FIELDS = ("speaker", "role", "text", "message", "content", "start_time", "timestamp",
                    "duration", "act", "oracle_prob")


def detect_format(path: str | os.PathLike[str]) -> str:
    """The archive format from a file name (``.jsonl[.gz]``, ``.csv[.gz]``, ``.parquet``)."""
    name = Path(path).name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    raise ValueError(
        f"{path}: cannot tell the archive format from the file name; "
        f"expected one of {', '.join(sorted(_SUFFIXES))}"
    )


def archive_files(path: str | os.PathLike[str]) -> list[Path]:
    """The shard files of an archive: the file itself, or a directory's archive files, sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = []
    for child in sorted(path.iterdir()):
        if not child.is_file() or any(tag in child.name for tag in _NOT_SHARDS):
            continue
        try:
            detect_format(child)
        except ValueError:
            continue
        files.append(child)
    if not files:
        raise ValueError(f"{path}: directory holds no archive files ({', '.join(sorted(_SUFFIXES))})")
    return files


class RejectSink:
    """Collects bad records: counts by reason, keeps the first few, writes all to a JSONL file if given."""

    def __init__(self, path: str | os.PathLike[str] | None = None, keep: int = 100):
        self.path = None if path is None else Path(path)
        self.count = 0
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.first: list[RecordProblem] = []
        self._keep = keep
        self._handle = None

    def add(self, problem: RecordProblem) -> None:
        self.count += 1
        # Group "text has 25000 characters" and "text has 31000 characters" together.
        self.by_reason[_reason_kind(problem.reason)] += 1
        if len(self.first) < self._keep:
            self.first.append(problem)
        if self.path is not None:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "w", encoding="utf-8")
            self._handle.write(json.dumps(problem.to_dict(), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def summary(self) -> str:
        """A few lines for a person: how many were set aside, where, the commonest reasons and examples."""
        if not self.count:
            return "rejected          0"
        lines = [f"rejected          {self.count}" + (f" (reasons in {self.path})" if self.path else "")]
        lines += [f"  {count:>8}  {reason}" for reason, count in self.by_reason.most_common(8)]
        lines += [f"  e.g. {problem}" for problem in self.first[:3]]
        return "\n".join(lines)

    def __enter__(self) -> "RejectSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason_kind(reason: str) -> str:
    return "".join("N" if ch.isdigit() else ch for ch in reason.split(",")[0])[:80]


@dataclasses.dataclass
class ReadStats:
    conversations: int = 0
    turns: int = 0
    rejected: int = 0


class ArchiveReader:
    """Iterate the valid conversations of an archive (a file or a directory of shards).

    Args:
      path: a ``.jsonl``, ``.jsonl.gz``, ``.csv``, ``.parquet`` file or a directory of them.
      limits: what counts as absurd input.
      strict: raise `BadRecordError` on the first bad record instead of setting it aside.
      rejects: where bad records go; a fresh in-memory `RejectSink` if None.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: Limits = Limits(),
        strict: bool = False,
        rejects: RejectSink | None = None,
    ):
        self.files = archive_files(path)
        self.limits = limits
        self.strict = strict
        self.rejects = rejects if rejects is not None else RejectSink()
        self.stats = ReadStats()
        # 8-byte digests rather than the ids themselves keep duplicate detection
        # at ~70 bytes per conversation, so 1.2M ids cost ~85 MB at most.
        self._seen_ids: set[bytes] = set()

    def __iter__(self) -> Iterator[Conversation]:
        for file in self.files:
            fmt = detect_format(file)
            if fmt == "jsonl":
                items = _read_jsonl(file, self.limits)
            elif fmt == "csv":
                items = _read_csv(file, self.limits)
            else:
                items = _read_parquet(file, self.limits)
            for location, item in items:
                if isinstance(item, Conversation):
                    digest = hashlib.blake2b(item.id.encode("utf-8"), digest_size=8).digest()
                    if digest in self._seen_ids:
                        item = RecordProblem(str(file), location, item.id, "id",
                                             "duplicate conversation id (first occurrence kept)",
                                             truncate_raw(item.to_dict()))
                    else:
                        self._seen_ids.add(digest)
                        self.stats.conversations += 1
                        self.stats.turns += item.num_turns
                        yield item
                        continue
                self.stats.rejected += 1
                if self.strict:
                    raise BadRecordError(item)
                self.rejects.add(item)


def estimate_turns(path: str | os.PathLike[str]) -> int | None:
    """A cheap estimate of an archive's total turns, for progress bars with an ETA (None if unknown).

    Exact for a synthetic archive (its manifest), flat Parquet (row counts from the footer) and CSV
    (lines); for JSONL, lines times the mean turns of the first 200 conversations; unknown for
    gzipped files and nested Parquet.
    """
    root = Path(path)
    try:
        manifest = json.loads((root / "manifest.json").read_text()) if root.is_dir() else None
        if manifest and isinstance(manifest.get("turns"), int):
            return manifest["turns"]
    except (OSError, ValueError):
        pass
    total = 0
    try:
        for file in archive_files(root):
            name = file.name.lower()
            if name.endswith(".gz"):
                return None
            if name.endswith(".parquet"):
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(file)
                if any(key in meta.schema_arrow.names for key in ("turns", "messages")):
                    return None
                total += meta.metadata.num_rows
            elif name.endswith(".csv"):
                with open(file, "rb") as handle:
                    total += max(sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 1, 0)
            else:
                sample: list[int] = []
                lines = 0
                with open(file, "rb") as handle:
                    for line in handle:
                        lines += 1
                        if len(sample) < 200:
                            try:
                                sample.append(len(json.loads(line).get("turns") or json.loads(line).get("messages") or []))
                            except (ValueError, AttributeError):
                                pass
                total += int(lines * (sum(sample) / len(sample))) if sample else lines
    except (OSError, ValueError):
        return None
    return total or None


def read_conversations(path: str | os.PathLike[str], **kwargs: Any) -> Iterator[Conversation]:
    """Shorthand for ``iter(ArchiveReader(path, **kwargs))``."""
    return iter(ArchiveReader(path, **kwargs))


# Each format's reader yields (location, conversation or problem) pairs.
Item = tuple[str, "Conversation | RecordProblem"]


def _read_jsonl(path: Path, limits: Limits) -> Iterator[Item]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            location = f"line {line_no}"
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as err:
                yield location, RecordProblem(str(path), location, None, None, f"line is not valid UTF-8 ({err.reason} at byte {err.start})",
                                    truncate_raw(raw_line.decode("utf-8", errors="replace")))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield location, RecordProblem(str(path), location, None, None, f"invalid JSON: {err.msg} at column {err.colno}",
                                    truncate_raw(line.rstrip("\n")))
                continue
            try:
                conv = conversation_from_mapping(obj, limits)
            except FieldError as err:
                yield location, RecordProblem(str(path), location, record_id_of(obj), err.field, err.reason,
                                              truncate_raw(line.rstrip("\n")))
                continue
            yield location, conv


def _group_rows(
    path: Path, rows: Iterable[tuple[int, Mapping[str, Any]]], limits: Limits, unit: str
) -> Iterator[Item]:
    """Group contiguous per-turn rows into conversations.

    A conversation is valid only if all its rows are; a bad row sets the whole
    conversation aside (with all its rows in ``raw``), since a conversation with a
    turn silently missing would mislead every turn after it.
    """
    current_id: object = None
    block: list[tuple[int, Mapping[str, Any]]] = []
    for number, row in rows:
        row_id = record_id_of(row)
        if block and row_id != current_id:
            yield _rows_to_conversation(path, block, limits, unit)
            block = []
        current_id = row_id
        block.append((number, row))
    if block:
        yield _rows_to_conversation(path, block, limits, unit)


def _rows_to_conversation(
    path: Path, block: list[tuple[int, Mapping[str, Any]]], limits: Limits, unit: str
) -> Item:
    location = f"{unit} {block[0][0]}" if len(block) == 1 else f"{unit}s {block[0][0]}-{block[-1][0]}"
    return location, _rows_to_record(path, block, limits, unit, location)


def _rows_to_record(
    path: Path, block: list[tuple[int, Mapping[str, Any]]], limits: Limits, unit: str, location: str
) -> Conversation | RecordProblem:
    first_no, first = block[0]
    record_id = record_id_of(first)
    raw = truncate_raw([dict(r) for _, r in block])

    def problem(field: str | None, reason: str, where: str = location) -> RecordProblem:
        return RecordProblem(str(path), where, record_id, field, reason, raw)

    if record_id is None or not record_id.strip():
        return problem("conversation_id", "missing conversation id")
    for number, row in block:
        bad = _bad_string_field(row)
        if bad is not None:
            return problem(bad, "text is not valid UTF-8", f"{unit} {number}")
    turn_key = next((k for k in _ROW_TURN_KEYS if k in first), None)
    ordered = block
    if turn_key is not None:
        indexed = []
        for number, row in block:
            value = row.get(turn_key)
            try:
                indexed.append((int(str(value).strip()), number, row))
            except (TypeError, ValueError):
                return problem(turn_key, f"turn index must be an integer, got {value!r}", f"{unit} {number}")
        counts = collections.Counter(index for index, _, _ in indexed)
        repeated = [index for index, count in counts.items() if count > 1]
        if repeated:
            return problem(turn_key, f"turn index {repeated[0]} appears more than once")
        ordered = [(number, row) for _, number, row in sorted(indexed, key=lambda item: item[0])]
    # Conversation-level fields come from the first row; rows must agree on the outcome.
    outcomes = {str(row.get("outcome")).strip() for _, row in block if row.get("outcome") not in (None, "")}
    if len(outcomes) > 1:
        return problem("outcome", f"rows disagree on the outcome: {sorted(outcomes)}")
    metadata: Any = first.get("metadata")
    if isinstance(metadata, str) and metadata.strip():
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as err:
            return problem("metadata", f"metadata is not valid JSON: {err.msg}", f"{unit} {first_no}")
    obj = {
        "id": record_id,
        "outcome": next((row.get("outcome") for _, row in block if row.get("outcome") not in (None, "")), None),
        **({limits.label_key: first.get(limits.label_key)}  # a label column of the rows' own (first row's)
           if limits.label_key and "." not in limits.label_key and limits.label_key in first else {}),
        "industry": first.get("industry") or None,
        "product": first.get("product") or None,
        "metadata": metadata or {},
        "turns": [{k: row[k] for k in _ROW_TURN_FIELDS if k in row and row[k] not in ("",)} for _, row in ordered],
    }
    try:
        return conversation_from_mapping(obj, limits)
    except FieldError as err:
        where = location
        field = err.field
        if field and field.startswith("turns["):
            # Point at the row that holds the bad turn.
            index = int(field[6:field.index("]")])
            where = f"{unit} {ordered[index][0]}"
            field = field[field.index("]") + 2:] if "." in field else field
        return problem(field, err.reason, where)


def _bad_string_field(row: Mapping[str, Any]) -> str | None:
    for key, value in row.items():
        if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
            return key
    return None


def _read_csv(path: Path, limits: Limits) -> Iterator[Item]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    # surrogateescape keeps undecodable bytes visible, so a bad row is reported
    # rather than the whole file failing to decode.
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        missing_id = not any(key in reader.fieldnames for key in ID_KEYS)
        if missing_id:
            yield "row 1", RecordProblem(str(path), "row 1", None, "conversation_id",
                                f"header has no conversation id column (one of {', '.join(ID_KEYS)}); "
                                f"found {reader.fieldnames}")
            return

        def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
            try:
                for row in reader:
                    # csv line numbers count the header as line 1: the same as a spreadsheet's row number.
                    yield reader.line_num, {k: v for k, v in row.items() if k is not None}
            except csv.Error as err:
                raise ValueError(f"{path}, row {reader.line_num}: malformed CSV: {err}") from None

        yield from _group_rows(path, rows(), limits, "row")


def _read_parquet(path: Path, limits: Limits) -> Iterator[Item]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    nested = any(key in names for key in ("turns", "messages"))

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        number = 0
        for batch in parquet.iter_batches(batch_size=8192):
            columns = batch.to_pydict()
            keys = list(columns)
            for values in zip(*(columns[k] for k in keys)):
                number += 1
                yield number, dict(zip(keys, values))

    if nested:
        for number, row in rows():
            try:
                conv = conversation_from_mapping(row, limits)
            except FieldError as err:
                yield f"row {number}", RecordProblem(str(path), f"row {number}", record_id_of(row), err.field,
                                                     err.reason, truncate_raw(row))
                continue
            yield f"row {number}", conv
    else:
        yield from _group_rows(path, rows(), limits, "row")
