"""Conversion jobs: a source read tolerantly, written in the library's strict format, bad records set aside."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

from salesrl_jax.data.readers import ArchiveReader, RejectSink
from salesrl_jax.data.records import Conversation
from salesrl_jax.data.validation import Limits, reading_limits
from salesrl_jax.data.writers import ArchiveWriter


@dataclasses.dataclass
class ConvertResult:
    output: Path
    conversations: int
    turns: int
    labelled: int
    converted: int
    rejects: RejectSink

    def summary(self) -> str:
        return (f"wrote {self.output}: {self.conversations} conversations, {self.turns} turns, {self.labelled} "
                f"labelled, {self.converted / max(self.labelled, 1):.3f} converted\n{self.rejects.summary()}")


def default_rejects_path(output: Path) -> Path:
    """``OUTPUT`` without its extensions, plus ``.rejects.jsonl``."""
    return output.with_name(output.name.split(".")[0] + ".rejects.jsonl")


def write_converted(read: Callable[[RejectSink], Iterable[Conversation]], output: str | os.PathLike[str],
                    rejects: str | os.PathLike[str] | None = None) -> ConvertResult:
    """Write what ``read(sink)`` yields to ``output`` (atomically), its bad records to ``rejects``."""
    output = Path(output)
    counts = dict(conversations=0, turns=0, labelled=0, converted=0)
    with RejectSink(rejects or default_rejects_path(output)) as sink, ArchiveWriter(output) as writer:
        for conv in read(sink):
            writer.write(conv)
            counts["conversations"] += 1
            counts["turns"] += conv.num_turns
            if conv.outcome is not None:
                counts["labelled"] += 1
                counts["converted"] += conv.outcome
    return ConvertResult(output, rejects=sink, **counts)


def convert_archive(input_path: str | os.PathLike[str], output: str | os.PathLike[str], *,
                    rejects: str | os.PathLike[str] | None = None, strict: bool = False,
                    max_turn_chars: int = Limits().max_turn_chars, label_key: str | None = None,
                    speakers: Mapping[str, str] | Iterable[str] = ()) -> ConvertResult:
    """Validate any JSONL / CSV / Parquet archive and write it in the library's format.

    Raises `BadRecordError` on the first bad record when ``strict``; otherwise bad records are set aside.
    ``label_key`` names the field that holds the outcome (dotted, e.g. ``metadata.donated``); the output
    then holds it as ``outcome``. ``speakers`` (``NAME=rep`` / ``NAME=customer``) name roles the usual aliases do
    not know, such as a diarizer's ``SPEAKER_00``; the output holds the roles.
    """
    limits = dataclasses.replace(reading_limits(label_key, speakers), max_turn_chars=max_turn_chars)
    return write_converted(lambda sink: ArchiveReader(input_path, limits=limits,
                                                      strict=strict, rejects=sink), output, rejects)


def convert_persuasionforgood(source: str | os.PathLike[str], output: str | os.PathLike[str], *,
                              rejects: str | os.PathLike[str] | None = None,
                              drop_low_quality: bool = False) -> ConvertResult:
    """PersuasionForGood (persuader = rep, persuadee = customer, donated = converted) in the library's format."""
    from salesrl_jax.data.persuasionforgood import read_persuasionforgood

    return write_converted(lambda sink: read_persuasionforgood(source, rejects=sink,
                                                               drop_low_quality=drop_low_quality), output, rejects)


def convert_casino(source: str | os.PathLike[str], output: str | os.PathLike[str], *,
                   rejects: str | os.PathLike[str] | None = None) -> ConvertResult:
    """CaSiNo (the deciding participant = customer, "Extremely satisfied" = converted) in the library's format."""
    from salesrl_jax.data.casino import read_casino

    return write_converted(lambda sink: read_casino(source, rejects=sink), output, rejects)
