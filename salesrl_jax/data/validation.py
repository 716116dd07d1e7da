"""Turning loosely-shaped exported records into strict `Conversation`s.

Tolerant input, strict output: the common export shapes are accepted
(``speaker``/``text``, ``speaker``/``message``, chat-style ``role``/``content``),
and every way a record can be wrong is reported as a `RecordProblem` that names
the file, the line or row, the record id and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any

from salesrl_jax.data.records import Conversation, Turn, normalize_speaker, parse_speaker_names

ID_KEYS = ("id", "conversation_id", "dialog_id", "dialogue_id", "session_id", "call_id")
TURNS_KEYS = ("turns", "messages", "dialogue", "dialog", "utterances", "conversation", "transcript")
OUTCOME_KEYS = ("outcome", "converted", "label", "sale", "success", "won")
METADATA_KEYS = ("metadata", "meta")  # a top-level "meta" object is read as metadata, never dropped
SPEAKER_KEYS = ("speaker", "role", "from", "author", "participant")
TEXT_KEYS = ("text", "message", "content", "utterance", "body", "value")
START_KEYS = ("start_time", "timestamp", "time", "start")
OUTCOME_WORDS: Mapping[str, int] = types.MappingProxyType(
    {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1})
"""The strings an outcome may be written as (lower-cased, stripped): CSV exports and CRMs write yes/no as often as
0/1; anything else ("won", "closed", a probability) is ambiguous and is set aside with its value."""
DURATION_KEYS = ("duration",)
# Chat exports carry instructions to the model as "system" turns: they are not
# part of the conversation, so they are skipped (and counted in metadata).
SKIPPED_ROLES = frozenset({"system", "developer", "tool", "function"})

# Undecodable input bytes, as errors="surrogateescape" keeps them.
SURROGATE_ESCAPES = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass(frozen=True)
class Limits:
    """How records are read: what counts as absurd input, and where the label is."""

    max_turn_chars: int = 20_000  # a longer single turn is almost surely a broken export
    max_turns: int = 2_000  # a longer conversation is almost surely several glued together
    label_key: str | None = None
    """The dotted field that holds the outcome (``won``, ``metadata.donated``, ``meta.crm.closed``); None reads
    the first of OUTCOME_KEYS. A record without that field is kept, unlabelled."""
    speaker_names: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    """Speaker names to roles before the usual aliases (keys folded by `speaker_key`, values rep / customer):
    `parse_speaker_names` of ``--speaker SPEAKER_00=rep`` (every command that reads an archive takes it)."""


def reading_limits(label_key: str | None = None, speakers: Mapping[str, str] | Iterable[str] = ()) -> Limits:
    """The `Limits` of a command that reads an archive: where its ``--label-key`` says the outcome is, and the roles
    its ``--speaker NAME=ROLE`` pairs (or a mapping) give speaker names; ValueError on a malformed pair."""
    return Limits(label_key=label_key, speaker_names=parse_speaker_names(speakers))


def reading_record(limits: Limits) -> dict[str, Any]:
    """What of ``limits`` changes what an archive reads as, for a run's record (empty at the defaults, so records
    written before a field existed still match): a rerun that would read the archive otherwise is refused."""
    return {**({"label_key": limits.label_key} if limits.label_key else {}),
            **({"speakers": dict(sorted(limits.speaker_names.items()))} if limits.speaker_names else {})}


@dataclasses.dataclass(frozen=True)
class RecordProblem:
    """Why one input record was set aside."""

    file: str
    location: str  # "line 12", "row 7", "rows 3-9"
    record_id: str | None
    field: str | None
    reason: str
    raw: str | None = None  # the offending input, truncated, so nothing is lost

    def __str__(self) -> str:
        rid = "?" if self.record_id is None else repr(self.record_id)
        field = "" if self.field is None else f", field {self.field!r}"
        return f"{self.file}, {self.location}, record {rid}{field}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BadRecordError(ValueError):
    """Raised in strict mode on the first bad record."""

    def __init__(self, problem: RecordProblem):
        super().__init__(str(problem))
        self.problem = problem


class FieldError(ValueError):
    """A problem inside one record, before file and location are known."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _first_key(obj: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        if key in obj:
            return key
    return None


def check_text(value: Any, field: str, limits: Limits) -> str:
    if isinstance(value, list):  # chat "content parts": [{"type": "text", "text": ...}]
        parts = [p.get("text") for p in value if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        value = "\n".join(parts) if parts else None
    if not isinstance(value, str):
        raise FieldError(field, f"text must be a string, got {type(value).__name__}")
    if SURROGATE_ESCAPES.search(value):
        raise FieldError(field, "text is not valid UTF-8")
    if not value.strip():
        raise FieldError(field, "text is empty")
    if len(value) > limits.max_turn_chars:
        raise FieldError(field, f"text has {len(value)} characters, more than the limit of {limits.max_turn_chars}")
    return value


def parse_outcome(value: Any, field: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value in (0, 1):
            return int(value)
    if isinstance(value, str) and value.strip().lower() in OUTCOME_WORDS:
        return OUTCOME_WORDS[value.strip().lower()]
    raise FieldError(field, f"outcome must be 0 or 1 (or true/false, yes/no), got {value!r}")


def parse_seconds(value: Any, field: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FieldError(field, f"expected seconds as a number, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise FieldError(field, f"expected a finite, non-negative number of seconds, got {value!r}")
    return seconds


def parse_probability(value: Any, field: str) -> float | None:
    if value is None:
        return None
    try:
        prob = float(value)
    except (TypeError, ValueError):
        raise FieldError(field, f"expected a probability, got {value!r}") from None
    if not 0.0 <= prob <= 1.0:
        raise FieldError(field, f"probability must lie in [0, 1], got {value!r}")
    return prob


def parse_turn(obj: Any, index: int, limits: Limits) -> Turn | None:
    """One turn from a mapping; None for a skipped (system) turn."""
    where = f"turns[{index}]"
    if not isinstance(obj, Mapping):
        raise FieldError(where, f"a turn must be an object, got {type(obj).__name__}")
    speaker_key = _first_key(obj, SPEAKER_KEYS)
    if speaker_key is None:
        raise FieldError(f"{where}.speaker", f"missing speaker (one of {', '.join(SPEAKER_KEYS)})")
    raw_speaker = obj[speaker_key]
    if isinstance(raw_speaker, str) and raw_speaker.strip().lower() in SKIPPED_ROLES:
        return None
    speaker = normalize_speaker(raw_speaker, limits.speaker_names)
    if speaker is None:
        raise FieldError(f"{where}.{speaker_key}", f"unknown speaker {raw_speaker!r} (name its role with "
                                                   f"--speaker {raw_speaker!s}=rep or =customer)")
    text_key = _first_key(obj, TEXT_KEYS)
    if text_key is None:
        raise FieldError(f"{where}.text", f"missing text (one of {', '.join(TEXT_KEYS)})")
    text = check_text(obj[text_key], f"{where}.{text_key}", limits)
    start_key = _first_key(obj, START_KEYS)
    start = parse_seconds(obj.get(start_key), f"{where}.{start_key}") if start_key else None
    duration = parse_seconds(obj.get("duration"), f"{where}.duration")
    act = obj.get("act")
    if act is not None and not isinstance(act, str):
        raise FieldError(f"{where}.act", f"act must be a string, got {act!r}")
    oracle = parse_probability(obj.get("oracle_prob"), f"{where}.oracle_prob")
    return Turn(speaker=speaker, text=text, start_time=start, duration=duration, act=act, oracle_prob=oracle)


def record_id_of(obj: Any) -> str | None:
    if not isinstance(obj, Mapping):
        return None
    key = _first_key(obj, ID_KEYS)
    if key is None or obj[key] is None:
        return None
    return str(obj[key])


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(key, f"{key} must be a string, got {value!r}")
    return value


def dotted_value(obj: Mapping[str, Any], dotted: str) -> Any:
    """``obj["a"]["b"]`` for ``"a.b"``; None where a step is missing (the record is then unlabelled)."""
    value: Any = obj
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def conversation_from_mapping(obj: Any, limits: Limits) -> Conversation:
    """Build a strict `Conversation` from one exported record (JSON object)."""
    if not isinstance(obj, Mapping):
        raise FieldError(None, f"a record must be a JSON object, got {type(obj).__name__}")
    record_id = record_id_of(obj)
    if record_id is None or not record_id.strip():
        raise FieldError("id", "missing conversation id")
    turns_key = _first_key(obj, TURNS_KEYS)
    if turns_key is None:
        raise FieldError("turns", "missing turns (or messages)")
    raw_turns = obj[turns_key]
    if not isinstance(raw_turns, list):
        raise FieldError(turns_key, f"turns must be a list, got {type(raw_turns).__name__}")
    if len(raw_turns) > limits.max_turns:
        raise FieldError(turns_key, f"{len(raw_turns)} turns, more than the limit of {limits.max_turns}")
    turns = []
    skipped = 0
    for index, raw in enumerate(raw_turns):
        turn = parse_turn(raw, index, limits)
        if turn is None:
            skipped += 1
        else:
            turns.append(turn)
    if not turns:
        raise FieldError(turns_key, "conversation has no turns")
    metadata_key = _first_key(obj, METADATA_KEYS)
    metadata = (obj[metadata_key] if metadata_key else None) or {}
    if not isinstance(metadata, Mapping):
        raise FieldError(metadata_key, f"{metadata_key} must be an object, got {type(metadata).__name__}")
    if limits.label_key is not None:
        outcome = parse_outcome(dotted_value(obj, limits.label_key), limits.label_key)
    else:
        outcome_key = _first_key(obj, OUTCOME_KEYS)
        outcome = parse_outcome(obj[outcome_key], outcome_key) if outcome_key else None
    if skipped:
        metadata = {**metadata, "skipped_system_turns": skipped}
    return Conversation(
        id=record_id,
        turns=tuple(turns),
        outcome=outcome,
        industry=_optional_str(obj, "industry"),
        product=_optional_str(obj, "product"),
        metadata=metadata,
    )


def truncate_raw(raw: Any, limit: int = 4_000) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"
