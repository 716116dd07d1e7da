"""The library's one conversation record type.

A conversation is an ordered tuple of turns; the prediction at turn ``t`` may
read turns ``0..t`` only, so nothing about the future (outcome, ground truth)
is ever stored *on* a turn in a way models read: ``act`` and ``oracle_prob``
are simulator ground truth, used for evaluation only.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Speaker = Literal["rep", "customer"]
SPEAKERS: tuple[str, ...] = ("rep", "customer")

# Names people export for the two sides of a sales conversation, normalised to
# lower case with spaces and hyphens folded into underscores.
SPEAKER_ALIASES: Mapping[str, Speaker] = types.MappingProxyType(
    {
        **{name: "rep" for name in (
            "rep", "agent", "sales_rep", "salesrep", "sales_agent", "assistant", "seller",
            "persuader", "salesperson", "sales", "representative", "vendor", "bot",
        )},
        **{name: "customer" for name in (
            "customer", "user", "prospect", "buyer", "client", "persuadee", "lead",
            "caller", "human", "shopper", "consumer",
        )},
    }
)


def speaker_key(raw: str) -> str:
    """A speaker name as the alias tables hold it: lower case, spaces and hyphens folded into underscores."""
    return raw.strip().lower().replace("-", "_").replace(" ", "_")


def normalize_speaker(raw: object, names: Mapping[str, Speaker] | None = None) -> Speaker | None:
    """Map an exported speaker or role name to ``"rep"``/``"customer"``; None if unknown. ``names`` (keys as
    `speaker_key` folds them) come before the usual aliases: a diarized export's ``SPEAKER_00``, an agent's name."""
    if not isinstance(raw, str):
        return None
    key = speaker_key(raw)
    if names and key in names:
        return names[key]
    return SPEAKER_ALIASES.get(key)


def parse_speaker_names(pairs: Mapping[str, str] | Iterable[str]) -> dict[str, Speaker]:
    """``{"speaker_00": "rep", ...}`` from ``["SPEAKER_00=rep", "Dana Smith=customer"]`` (the command line's form) or
    ``{"SPEAKER_00": "rep"}``; ValueError naming the pair that is not ``NAME=rep`` or ``NAME=customer``."""
    if isinstance(pairs, Mapping):
        items = [(name, role, f"{name}={role}") for name, role in pairs.items()]
    else:
        items = [(*pair.rpartition("=")[::2], pair) for pair in pairs]  # no "=": an empty name, refused below
    names: dict[str, Speaker] = {}
    for name, role, given in items:
        if not name.strip() or not isinstance(role, str) or role.strip().lower() not in SPEAKERS:
            raise ValueError(f"speaker name {given!r}: expected NAME=rep or NAME=customer")
        names[speaker_key(name)] = role.strip().lower()  # type: ignore[assignment]
    return names


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """One utterance.

    Attributes:
      speaker: "rep" or "customer".
      text: what was said (non-empty).
      start_time: seconds from the start of the conversation, if known.
      duration: speaking time in seconds, if known.
      act: simulator ground truth, the dialogue act (evaluation only).
      oracle_prob: simulator ground truth, P(sale | latent state after this
        turn) (evaluation only: the ceiling a reader of the text can reach).
    """

    speaker: Speaker
    text: str
    start_time: float | None = None
    duration: float | None = None
    act: str | None = None
    oracle_prob: float | None = None

    def __reduce__(self):
        # Positional, not the slots dataclass's default state (which calls dataclasses.fields on every turn): a
        # `salesrl score` chunk sends about 20,000 turns to a worker process.
        return (Turn, (self.speaker, self.text, self.start_time, self.duration, self.act, self.oracle_prob))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"speaker": self.speaker, "text": self.text}
        for name in ("start_time", "duration", "act", "oracle_prob"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Conversation:
    """An immutable sales conversation.

    Attributes:
      id: unique within an archive.
      turns: ordered turns, at least one.
      outcome: 1 converted, 0 not, None unknown (unlabelled archives).
      industry: optional industry name.
      product: optional product name.
      metadata: free-form, JSON-serialisable; read-only.
    """

    id: str
    turns: tuple[Turn, ...]
    outcome: int | None = None
    industry: str | None = None
    product: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(self.turns))
        object.__setattr__(self, "metadata", types.MappingProxyType(dict(self.metadata)))

    def __reduce__(self):
        # A read-only mapping proxy does not pickle; rebuild from a plain dict (for worker processes).
        return (Conversation, (self.id, self.turns, self.outcome, self.industry, self.product, dict(self.metadata)))

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def has_ground_truth(self) -> bool:
        return all(turn.oracle_prob is not None for turn in self.turns)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.industry is not None:
            out["industry"] = self.industry
        if self.product is not None:
            out["product"] = self.product
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        out["turns"] = [turn.to_dict() for turn in self.turns]
        return out
