"""Streaming readers for conversation archives: JSONL (plain or .gz), CSV and Parquet.

Every reader yields strict `Conversation`s one at a time (a 1.2M-conversation
archive is never held in memory) and hands each bad record, with its file,
line or row, id and field, to a `RejectSink`; in strict mode the first bad
record raises `BadRecordError` instead.

CSV and flat Parquet hold one row per turn (``conversation_id, turn_index,
speaker, text, [start_time, duration, outcome, industry, product, act,
oracle_prob, metadata]``), each column under any name the nested form accepts
(``call_id``, ``turn``, ``role``, ``utterance``, ``won``, ...: the ``*_KEYS`` of
`salesrl_jax.data.validation`). A conversation's rows need not be adjacent (exports
sorted by turn or by time interleave them): a first pass over the id column
checks, and only an interleaved file is grouped, through an on-disk SQLite sort
with bounded memory. Parquet may also hold one row per conversation with a
``turns`` list column.

Damage costs only what it damages: a bad line or row is set aside and reading
goes on; a truncated or corrupt compressed stream keeps every record before
the damage and sets the rest of the file aside with the reason; a directory
names every entry it does not read (`ArchiveFiles.skipped`).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import gzip
import hashlib
import json
import os
import pickle
import re
import sqlite3
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from salesrl_jax.data.records import Conversation
from salesrl_jax.data.validation import (
    ID_KEYS,
    OUTCOME_KEYS,
    SPEAKER_KEYS,
    START_KEYS,
    SURROGATE_ESCAPES,
    TEXT_KEYS,
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
# The library's own side files, which a directory archive may hold beside its shards (read silently past).
_SIDE_FILES = ("manifest.json", "rejects.jsonl")
_SIDE_SUFFIXES = (".rejects.jsonl", ".lock")
CSV_FIELD_LIMIT = 1 << 24  # bytes: a longer field is set aside; shorter ones reach validation, which names the field
# What a damaged compressed stream or file raises part-way through.
_STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)
_ROW_TURN_KEYS = ("turn_index", "turn", "index", "position")
_ROW_TURN_FIELDS = (*SPEAKER_KEYS, *TEXT_KEYS, *START_KEYS, "duration", "act", "oracle_prob")
"""A row's turn-level columns: the names the nested form reads (`salesrl_jax.data.validation`), so that a CSV with an
``utterance`` or ``author`` column reads as its JSONL export would."""


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


@dataclasses.dataclass(frozen=True)
class ArchiveFiles:
    """What a path holds: the shard files read, in order, and each entry of a directory not read, with why."""

    files: list[Path]
    skipped: list[tuple[Path, str]]


def list_archive(path: str | os.PathLike[str]) -> ArchiveFiles:
    """The shard files of an archive (the file itself, or a directory's archive files, sorted) and what a
    directory holds that is not read: subdirectories and files of other formats, each with the reason.
    The library's own side files (``manifest.json``, ``rejects.jsonl``, ``*.rejects.jsonl``) are neither."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        return ArchiveFiles([path], [])
    files, skipped = [], []
    for child in sorted(path.iterdir()):
        if child.name in _SIDE_FILES or child.name.endswith(_SIDE_SUFFIXES):
            continue
        if child.is_dir():
            skipped.append((child, "a subdirectory: an archive directory is read one level deep"))
            continue
        if not child.is_file():
            skipped.append((child, "not a regular file"))
            continue
        try:
            detect_format(child)
        except ValueError:
            skipped.append((child, f"not an archive file (expected {', '.join(sorted(_SUFFIXES))})"))
            continue
        files.append(child)
    if not files:
        raise ValueError(f"{path}: directory holds no archive files ({', '.join(sorted(_SUFFIXES))})"
                         + (f"; skipped {', '.join(p.name for p, _ in skipped)}" if skipped else ""))
    return ArchiveFiles(files, skipped)


def archive_files(path: str | os.PathLike[str]) -> list[Path]:
    """The shard files of an archive, in order (see `list_archive`)."""
    return list_archive(path).files


class RejectSink:
    """Collects bad records: counts by reason, keeps the first few, writes all to a JSONL file if given.

    The file is this run's: one an earlier run left is removed at once, so a rerun that rejects nothing
    leaves no stale reasons behind."""

    def __init__(self, path: str | os.PathLike[str] | None = None, keep: int = 100):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.count = 0
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.first: list[RecordProblem] = []
        self._keep = keep
        self._handle = None

    def add(self, problem: RecordProblem) -> None:
        self.count += 1
        # Group "text has 25000 characters" and "text has 31000 characters" together.
        self.by_reason[reason_kind(problem.reason)] += 1
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


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def reason_kind(reason: str) -> str:
    """What a reason says, without its values, so that reasons differing only in them count together: a quoted value
    (a repr) becomes ``…`` wherever it appears (``unknown speaker 'SPEAKER_00' (... --speaker SPEAKER_00=rep ...)``),
    a trailing ``, got VALUE`` is dropped and numbers become N (``text has 25000 characters``)."""
    kind = reason
    for value in sorted({a or b for a, b in _QUOTED.findall(reason)} - {""}, key=len, reverse=True):
        kind = kind.replace(value, "…")
    kind = kind.replace('"…"', "'…'")  # repr quotes a value holding an apostrophe with double quotes
    kind = re.sub(r", got .*$", "", kind, flags=re.DOTALL)
    return re.sub(r"\d+", "N", kind)[:120]


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
        listing = list_archive(path)
        self.files = listing.files
        self.skipped = listing.skipped
        self.limits = limits
        self.strict = strict
        self.rejects = rejects if rejects is not None else RejectSink()
        self.stats = ReadStats()
        # 8-byte digests rather than the ids themselves keep duplicate detection
        # at ~70 bytes per conversation, so 1.2M ids cost ~85 MB at most.
        self._seen_ids: set[bytes] = set()

    def __iter__(self) -> Iterator[Conversation]:
        # Entries of a directory that are not read are said, in the rejects (never a strict-mode error:
        # they hold no record that failed).
        for entry, reason in self.skipped:
            self.stats.rejected += 1
            self.rejects.add(RecordProblem(str(entry), "whole file", None, None, f"skipped: {reason}"))
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


def _damaged(path: Path, after: str, err: BaseException) -> RecordProblem:
    """The rest of a file that cannot be read past ``after`` (a truncated or corrupt compressed stream, ...)."""
    reason = str(err) or type(err).__name__
    return RecordProblem(str(path), f"after {after}", None, None,
                         f"the rest of the file cannot be read ({type(err).__name__}: {reason}); "
                         "every record before this point was read")


def _read_jsonl(path: Path, limits: Limits) -> Iterator[Item]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    line_no = 0
    try:
        with opener(path, "rb") as handle:
            for line_no, raw_line in enumerate(handle, start=1):
                if line_no == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
                    raw_line = raw_line[3:]  # a UTF-8 byte-order mark, as some editors write
                if not raw_line.strip():
                    continue
                yield _jsonl_record(path, f"line {line_no}", raw_line, limits)
    except _STREAM_ERRORS as err:
        yield f"line {line_no + 1}", _damaged(path, f"line {line_no}" if line_no else "the start", err)


def _jsonl_record(path: Path, location: str, raw_line: bytes, limits: Limits) -> Item:
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as err:
        return location, RecordProblem(str(path), location, None, None,
                                       f"line is not valid UTF-8 ({err.reason} at byte {err.start})",
                                       truncate_raw(raw_line.decode("utf-8", errors="replace")))
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return location, RecordProblem(str(path), location, None, None,
                                       f"invalid JSON: {err.msg} at column {err.colno}", truncate_raw(line.rstrip("\n")))
    except RecursionError:
        return location, RecordProblem(str(path), location, None, None, "JSON nested too deeply to be a record",
                                       truncate_raw(line.rstrip("\n")))
    try:
        conv = conversation_from_mapping(obj, limits)
    except FieldError as err:
        return location, RecordProblem(str(path), location, record_id_of(obj), err.field, err.reason,
                                       truncate_raw(line.rstrip("\n")))
    except RecursionError:
        return location, RecordProblem(str(path), location, record_id_of(obj), None,
                                       "record nested too deeply", truncate_raw(line.rstrip("\n")))
    return location, conv


# A source of per-turn rows: each item a (row number, row) or, for a row that could not be read, a
# (row number, RecordProblem).
Rows = Iterator[tuple[int, "Mapping[str, Any] | RecordProblem"]]


def _grouped_rows(path: Path, rows: Callable[[], Rows], ids: Callable[[], Iterator[str | None]], limits: Limits,
                  unit: str) -> Iterator[Item]:
    """Per-turn rows into conversations, whatever their order: ``ids()`` (a cheap first pass over the id
    column) tells whether each conversation's rows are adjacent; if so they stream through `_group_rows`,
    else they are first grouped by an on-disk sort (`_sorted_by_conversation`), conversations in the order
    of their first row."""
    if _adjacent(ids()):
        yield from _group_rows(path, rows(), limits, unit)
    else:
        yield from _group_rows(path, _sorted_by_conversation(rows()), limits, unit)


def _adjacent(ids: Iterator[str | None]) -> bool:
    """Whether no id reappears after another id (8-byte digests: bounded memory per conversation)."""
    finished: set[bytes] = set()
    current: str | None = None
    for row_id in ids:
        if row_id == current:
            continue
        if current is not None:
            finished.add(hashlib.blake2b(current.encode("utf-8", "surrogateescape"), digest_size=8).digest())
        if row_id is not None and hashlib.blake2b(row_id.encode("utf-8", "surrogateescape"),
                                                  digest_size=8).digest() in finished:
            return False
        current = row_id
    return True


def _sorted_by_conversation(rows: Rows) -> Rows:
    """``rows`` reordered so each conversation's rows are adjacent (in file order within it), conversations
    in the order of their first row. SQLite sorts on disk, so memory stays bounded for any file size;
    unreadable rows keep their place as their own group."""
    with tempfile.TemporaryDirectory(prefix="salesrl-group-") as tmp:
        db = sqlite3.connect(os.path.join(tmp, "rows.sqlite"))
        try:
            db.execute("CREATE TABLE ids (id BLOB PRIMARY KEY, first INTEGER)")
            db.execute("CREATE TABLE rows (id BLOB, number INTEGER, data BLOB)")
            for number, row in rows:
                key = (f"\0problem:{number}" if isinstance(row, RecordProblem)
                       else f"id:{record_id_of(row)}" if record_id_of(row) is not None else f"\0noid:{number}")
                key = key.encode("utf-8", "surrogateescape")  # undecodable bytes stay as they were
                db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)", (key, number))
                db.execute("INSERT INTO rows VALUES (?, ?, ?)", (key, number, pickle.dumps(row)))
            db.commit()
            query = "SELECT rows.number, rows.data FROM rows JOIN ids USING (id) ORDER BY ids.first, rows.number"
            for number, data in db.execute(query):
                yield number, pickle.loads(data)
        finally:
            db.close()


def _group_rows(path: Path, rows: Rows, limits: Limits, unit: str) -> Iterator[Item]:
    """Group adjacent per-turn rows into conversations.

    A conversation is valid only if all its rows are; a bad row sets the whole
    conversation aside (with all its rows in ``raw``), since a conversation with a
    turn silently missing would mislead every turn after it.
    """
    current_id: object = None
    block: list[tuple[int, Mapping[str, Any]]] = []
    for number, row in rows:
        if isinstance(row, RecordProblem):
            yield f"{unit} {number}", row
            continue
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
    # Conversation-level fields come from the first row; rows must agree on the outcome. Its column: the label key
    # where one is named (a dotted one reads the metadata column instead), else the first outcome name in the header.
    if limits.label_key:
        outcome_key = None if "." in limits.label_key else limits.label_key
    else:
        outcome_key = next((key for key in OUTCOME_KEYS if key in first), None)
    given = [row.get(outcome_key) for _, row in block if row.get(outcome_key) not in (None, "")]
    outcomes = {str(value).strip() for value in given}
    if len(outcomes) > 1:
        return problem(outcome_key, f"rows disagree on the outcome: {sorted(outcomes)} (if {outcome_key!r} is not "
                                    "the conversation's outcome, name the column that is with --label-key)")
    metadata: Any = first.get("metadata")
    if isinstance(metadata, str) and metadata.strip():
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as err:
            return problem("metadata", f"metadata is not valid JSON: {err.msg}", f"{unit} {first_no}")
    obj = {
        "id": record_id,
        # The outcome from any row that holds one (an export may write it on the last row only).
        **({outcome_key: given[0]} if given else {}),
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
    """The first field holding undecodable bytes (kept as surrogate escapes). The search runs in C: a Python loop
    over characters here was half of `salesrl score`'s reading time."""
    for key, value in row.items():
        if isinstance(value, str) and not value.isascii() and SURROGATE_ESCAPES.search(value):
            return key
    return None


def _read_csv(path: Path, limits: Limits) -> Iterator[Item]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    csv.field_size_limit(CSV_FIELD_LIMIT)

    def open_csv():
        # utf-8-sig drops the byte-order mark Excel writes (the header would otherwise not match); surrogateescape
        # keeps undecodable bytes visible, so a bad row is reported rather than the whole file failing to decode.
        return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")

    try:
        with open_csv() as handle:
            fieldnames = csv.DictReader(handle).fieldnames
    except _STREAM_ERRORS as err:
        yield "row 1", _damaged(path, "the start", err)
        return
    except csv.Error as err:
        yield "row 1", RecordProblem(str(path), "row 1", None, None, f"malformed CSV header: {err}")
        return
    if fieldnames is None:
        return
    if not any(key in fieldnames for key in ID_KEYS):
        yield "row 1", RecordProblem(str(path), "row 1", None, "conversation_id",
                                     f"header has no conversation id column (one of {', '.join(ID_KEYS)}); "
                                     f"found {fieldnames}")
        return
    id_key = next(key for key in ID_KEYS if key in fieldnames)
    damage: list[RecordProblem] = []  # where the stream broke, said once after the rows before it

    def rows() -> Rows:
        damage.clear()
        number = 1
        try:
            with open_csv() as handle:
                reader = csv.DictReader(handle)
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        return
                    except csv.Error as err:
                        # csv line numbers count the header as line 1: the same as a spreadsheet's row number.
                        yield reader.line_num, RecordProblem(str(path), f"row {reader.line_num}", None, None,
                                                             f"malformed CSV: {err}")
                        continue
                    number = reader.line_num
                    yield number, {k: v for k, v in row.items() if k is not None}
        except _STREAM_ERRORS as err:
            damage.append(_damaged(path, f"row {number}", err))

    def ids() -> Iterator[str | None]:
        for _, row in rows():
            yield None if isinstance(row, RecordProblem) else row.get(id_key)

    yield from _grouped_rows(path, rows, ids, limits, "row")
    for problem in damage:
        yield problem.location, problem


def _read_parquet(path: Path, limits: Limits) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        yield "whole file", RecordProblem(str(path), "whole file", None, None, f"not a readable Parquet file: {err}")
        return
    names = parquet.schema_arrow.names
    nested = any(key in names for key in ("turns", "messages"))
    damage: list[RecordProblem] = []

    def rows(columns: list[str] | None = None) -> Rows:
        damage.clear()
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=8192, columns=columns):
                values = batch.to_pydict()
                keys = list(values)
                for row in zip(*(values[k] for k in keys)):
                    number += 1
                    yield number, dict(zip(keys, row))
        except (pa.ArrowException, OSError) as err:
            damage.append(_damaged(path, f"row {number}", err))

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
        id_key = next((key for key in ID_KEYS if key in names), None)
        yield from _grouped_rows(path, rows, lambda: (None if id_key is None else row[id_key]
                                                      for _, row in rows([id_key] if id_key else [])), limits, "row")
    for problem in damage:
        yield problem.location, problem
