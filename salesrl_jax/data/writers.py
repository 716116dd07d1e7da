"""Streaming, atomic writers for conversation archives (JSONL[.gz], CSV, Parquet).

Strict output: every writer emits the library's canonical field names, so what
one writer writes, every reader reads back unchanged. Files appear under their
final name only when complete (written to a temporary name, then renamed), so a
killed run never leaves a half-written archive that looks whole.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from salesrl_jax.data.readers import detect_format
from salesrl_jax.data.records import Conversation
from salesrl_jax.io.atomic import discard, publish, temporary_sibling

# One row per turn; conversation-level columns repeat on every row of a
# conversation (Parquet's dictionary and run-length encodings make that cheap).
ROW_COLUMNS = (
    "conversation_id", "turn_index", "speaker", "text", "start_time", "duration",
    "outcome", "industry", "product", "act", "oracle_prob", "metadata",
)
PARQUET_SCHEMA = pa.schema([
    ("conversation_id", pa.string()), ("turn_index", pa.int32()), ("speaker", pa.string()),
    ("text", pa.string()), ("start_time", pa.float64()), ("duration", pa.float64()),
    ("outcome", pa.int8()), ("industry", pa.string()), ("product", pa.string()),
    ("act", pa.string()), ("oracle_prob", pa.float64()), ("metadata", pa.string()),
])


def conversation_rows(conv: Conversation) -> Iterable[dict[str, Any]]:
    """The per-turn rows of a conversation, in `ROW_COLUMNS` order."""
    metadata = json.dumps(dict(conv.metadata), ensure_ascii=False, sort_keys=True) if conv.metadata else None
    for index, turn in enumerate(conv.turns):
        yield {
            "conversation_id": conv.id, "turn_index": index, "speaker": turn.speaker, "text": turn.text,
            "start_time": turn.start_time, "duration": turn.duration, "outcome": conv.outcome,
            "industry": conv.industry, "product": conv.product, "act": turn.act,
            "oracle_prob": turn.oracle_prob, "metadata": metadata,
        }


class ArchiveWriter:
    """Write conversations to one archive file; the format comes from the file name.

    Use as a context manager; the file appears under its name on a clean exit
    and is discarded if the block raises.
    """

    def __init__(self, path: str | os.PathLike[str], *, row_group_turns: int = 131_072):
        self.path = Path(path)
        self.format = detect_format(self.path)
        self.count = 0
        self._tmp = temporary_sibling(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list[Any]] = {name: [] for name in ROW_COLUMNS}
        self._row_group_turns = row_group_turns
        self._parquet = None
        self._file = None
        if self.format in ("jsonl", "csv"):
            self._file = open(self._tmp, "wb")
            # No name and mtime 0 in the gzip header keep the bytes identical across runs.
            gz = self.path.name.lower().endswith(".gz")
            self._handle = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0) if gz else self._file
        if self.format == "csv":
            self._text = _TextOut(self._handle)
            self._csv = csv.writer(self._text, lineterminator="\n")
            self._csv.writerow(ROW_COLUMNS)

    def write(self, conv: Conversation) -> None:
        self.count += 1
        if self.format == "jsonl":
            self._handle.write(json.dumps(conv.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n")
        elif self.format == "csv":
            for row in conversation_rows(conv):
                self._csv.writerow(["" if row[c] is None else row[c] for c in ROW_COLUMNS])
        else:
            for row in conversation_rows(conv):
                for name in ROW_COLUMNS:
                    self._rows[name].append(row[name])
            if len(self._rows["turn_index"]) >= self._row_group_turns:
                self._flush_parquet()

    def write_all(self, conversations: Iterable[Conversation]) -> int:
        for conv in conversations:
            self.write(conv)
        return self.count

    def _flush_parquet(self) -> None:
        table = pa.table({name: pa.array(self._rows[name], type=PARQUET_SCHEMA.field(name).type)
                          for name in ROW_COLUMNS}, schema=PARQUET_SCHEMA)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, PARQUET_SCHEMA, compression="zstd")
        self._parquet.write_table(table)
        self._rows = {name: [] for name in ROW_COLUMNS}

    def close(self, *, keep: bool = True) -> None:
        if self.format == "parquet":
            if keep and (self._rows["turn_index"] or self._parquet is None):
                self._flush_parquet()
            if self._parquet is not None:
                self._parquet.close()
        else:
            self._handle.close()
            self._file.close()
        if keep:
            publish(self._tmp, self.path)
        else:
            discard(self._tmp)

    def __enter__(self) -> "ArchiveWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(keep=exc_type is None)


class _TextOut:
    """A minimal text adapter so `csv.writer` can write UTF-8 into a binary (maybe gzip) handle."""

    def __init__(self, raw: Any):
        self._raw = raw

    def write(self, text: str) -> int:
        return self._raw.write(text.encode("utf-8"))


def write_conversations(path: str | os.PathLike[str], conversations: Iterable[Conversation]) -> int:
    """Write an archive in one call; returns the number of conversations written."""
    with ArchiveWriter(path) as writer:
        return writer.write_all(conversations)
