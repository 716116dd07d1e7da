"""Convert the PersuasionForGood corpus (Wang et al., ACL 2019) into conversation records.

Mapping: persuader (role B4 = 0) = rep, persuadee (B4 = 1) = customer,
outcome = the persuadee's actual donation B6 > 0. ``full_dialog.csv`` holds one
row per sentence; consecutive sentences of one speaker in one turn form one
utterance. Dialogue ids starting with ``BAD_`` were marked low quality by the
authors: kept, and flagged in metadata.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator

from salesrl_jax.data.readers import RejectSink
from salesrl_jax.data.records import Conversation, Turn
from salesrl_jax.data.validation import FieldError, Limits, RecordProblem, check_text

ROLE_TO_SPEAKER = {"0": "rep", "1": "customer"}


def _donations(info_path: Path, rejects: RejectSink) -> dict[str, float]:
    """Persuadee donation per dialogue id, from full_info.csv."""
    donations: dict[str, float] = {}
    with open(info_path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if row.get("B4", "").strip() != "1":
                continue
            dialog = row.get("B2", "")
            try:
                donations[dialog] = float(row.get("B6", ""))
            except ValueError:
                rejects.add(RecordProblem(str(info_path), f"row {reader.line_num}", dialog, "B6",
                                          f"donation must be a number, got {row.get('B6')!r}"))
    return donations


def read_persuasionforgood(source: str | os.PathLike[str], *, rejects: RejectSink | None = None,
                           limits: Limits = Limits(), drop_low_quality: bool = False) -> Iterator[Conversation]:
    """Yield one `Conversation` per dialogue of ``source/full_dialog.csv``.

    Dialogues without a persuadee donation in ``full_info.csv`` are kept with
    ``outcome=None`` (unlabelled), never guessed.
    """
    source = Path(source)
    rejects = rejects if rejects is not None else RejectSink()
    dialog_path, info_path = source / "full_dialog.csv", source / "full_info.csv"
    for path in (dialog_path, info_path):
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found (expected the PersuasionForGood FullData files in {source})")
    donations = _donations(info_path, rejects)

    def flush(dialog: str, first_row: int, utterances: list[tuple[str, list[str]]], bad: RecordProblem | None):
        if bad is not None:
            rejects.add(bad)
            return None
        low_quality = dialog.startswith("BAD_")
        if drop_low_quality and low_quality:
            return None
        try:
            turns = tuple(Turn(speaker=spk, text=check_text(" ".join(parts), "Unit", limits))
                          for spk, parts in utterances)
        except FieldError as err:
            rejects.add(RecordProblem(str(dialog_path), f"rows from {first_row}", dialog, err.field, err.reason))
            return None
        donation = donations.get(dialog)
        return Conversation(
            id=dialog, turns=turns, outcome=None if donation is None else int(donation > 0),
            industry="charity", product="Save the Children donation",
            metadata={"source": "persuasionforgood", "low_quality": low_quality},
        )

    with open(dialog_path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        current, first_row = None, 0
        utterances: list[tuple[str, list[str]]] = []
        last_turn: str | None = None
        bad: RecordProblem | None = None
        for row in reader:
            dialog = row.get("B2", "")
            if dialog != current:
                if current is not None:
                    conv = flush(current, first_row, utterances, bad)
                    if conv is not None:
                        yield conv
                current, first_row, utterances, last_turn, bad = dialog, reader.line_num, [], None, None
            if bad is not None:
                continue
            speaker = ROLE_TO_SPEAKER.get(row.get("B4", "").strip())
            if speaker is None:
                bad = RecordProblem(str(dialog_path), f"row {reader.line_num}", dialog, "B4",
                                    f"unknown role {row.get('B4')!r} (expected 0 = persuader or 1 = persuadee)")
                continue
            text = (row.get("Unit") or "").strip()
            if not text:
                continue  # an empty sentence inside an utterance carries nothing
            turn = row.get("Turn", "")
            if utterances and utterances[-1][0] == speaker and turn == last_turn:
                utterances[-1][1].append(text)
            else:
                utterances.append((speaker, [text]))
            last_turn = turn
        if current is not None:
            conv = flush(current, first_row, utterances, bad)
            if conv is not None:
                yield conv
