"""Convert CaSiNo (Chawla et al., NAACL 2021; campsite negotiations, CC BY 4.0) into conversation records.

The convention (../shared/data/casino/README.md):

* the **customer** is the participant who makes the final decision: who sends the last ``Accept-Deal``
  or ``Walk-Away``; the other participant is the **rep**;
* the **outcome** is 1 if the customer's post-survey satisfaction is "Extremely satisfied", else 0;
* the action messages (``Submit-Deal``, ``Accept-Deal``, ``Reject-Deal``, ``Walk-Away``) decide the roles
  and the deal, so they would leak the label: they never become turns. They are kept in metadata with
  their positions (the number of text turns before each), with whether a deal was reached and both
  sides' post-survey outcomes. Only free-text messages are turns, one per message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from salesrl_jax.data.readers import RejectSink
from salesrl_jax.data.records import Conversation, Turn
from salesrl_jax.data.validation import FieldError, Limits, RecordProblem, check_text, truncate_raw

ACTIONS = ("Submit-Deal", "Accept-Deal", "Reject-Deal", "Walk-Away")
FINAL_ACTIONS = ("Accept-Deal", "Walk-Away")
POSITIVE = "Extremely satisfied"
SPLIT_FILES = ("casino_train.json", "casino_valid.json", "casino_test.json")


def casino_files(source: str | os.PathLike[str]) -> list[Path]:
    """The dialogue files of ``source``: a JSON file, or a directory with the three split files (or casino.json)."""
    source = Path(source)
    if source.is_file():
        return [source]
    splits = [source / name for name in SPLIT_FILES if (source / name).exists()]
    if splits:
        return splits
    if (source / "casino.json").exists():
        return [source / "casino.json"]
    raise FileNotFoundError(f"{source}: no CaSiNo files here (expected {', '.join(SPLIT_FILES)} or casino.json)")


class _Reject(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def _dialogue(raw: Any, split: str, limits: Limits) -> Conversation:
    if not isinstance(raw, dict):
        raise _Reject("dialogue", f"a dialogue must be an object, got {type(raw).__name__}")
    if raw.get("dialogue_id") is None:
        raise _Reject("dialogue_id", "missing")
    logs, info = raw.get("chat_logs"), raw.get("participant_info")
    if not isinstance(logs, list) or not logs:
        raise _Reject("chat_logs", "must be a non-empty list of messages")
    if not isinstance(info, dict) or len(info) != 2:
        raise _Reject("participant_info", "must describe exactly two participants")
    for index, message in enumerate(logs):
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            raise _Reject(f"chat_logs[{index}].text", "every message needs a text")
        if message.get("id") not in info:
            raise _Reject(f"chat_logs[{index}].id", f"{message.get('id')!r} is not one of the participants")
    finals = [m for m in logs if m["text"] in FINAL_ACTIONS]
    if not finals:
        raise _Reject("chat_logs", "no final decision (Accept-Deal or Walk-Away): the roles are undefined")
    customer_id = finals[-1]["id"]
    rep_id = next(p for p in info if p != customer_id)
    speaker = {customer_id: "customer", rep_id: "rep"}
    turns, actions = [], []
    for index, message in enumerate(logs):
        if message["text"] in ACTIONS:
            actions.append({"action": message["text"], "by": speaker[message["id"]], "after_turns": len(turns),
                            "task_data": message.get("task_data") or {}})
            continue
        try:
            turns.append(Turn(speaker=speaker[message["id"]],
                              text=check_text(message["text"], f"chat_logs[{index}].text", limits)))
        except FieldError as err:
            raise _Reject(err.field, err.reason) from None
    if not turns:
        raise _Reject("chat_logs", "no free-text messages")

    def outcomes(participant: str) -> dict:
        value = info[participant].get("outcomes") if isinstance(info[participant], dict) else None
        return value if isinstance(value, dict) else {}

    satisfaction = outcomes(customer_id).get("satisfaction")
    return Conversation(
        id=f"casino-{raw['dialogue_id']}", turns=tuple(turns),
        outcome=None if satisfaction is None else int(satisfaction == POSITIVE),  # unlabelled, never guessed
        industry="campsite negotiation", product="camping supplies",
        metadata={"source": "casino", "split": split, "label": f"customer satisfaction == {POSITIVE!r}",
                  "deal_reached": finals[-1]["text"] == "Accept-Deal", "actions": actions,
                  "customer": {"participant": customer_id, **outcomes(customer_id)},
                  "rep": {"participant": rep_id, **outcomes(rep_id)}},
    )


def read_casino(source: str | os.PathLike[str], *, rejects: RejectSink | None = None,
                limits: Limits = Limits()) -> Iterator[Conversation]:
    """Yield one `Conversation` per dialogue of the CaSiNo files in ``source`` (see the module docstring);
    a bad dialogue, or a file that is not a JSON list, is set aside with the reason."""
    rejects = rejects if rejects is not None else RejectSink()
    for path in casino_files(source):
        try:
            dialogues = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            rejects.add(RecordProblem(str(path), "whole file", None, None, f"not valid JSON: {err}"))
            continue
        if not isinstance(dialogues, list):
            rejects.add(RecordProblem(str(path), "whole file", None, None, "expected a JSON list of dialogues"))
            continue
        split = path.stem.removeprefix("casino_")
        for index, raw in enumerate(dialogues):
            try:
                yield _dialogue(raw, split, limits)
            except _Reject as bad:
                record_id = raw.get("dialogue_id") if isinstance(raw, dict) else None
                rejects.add(RecordProblem(str(path), f"dialogue {index}",
                                          None if record_id is None else f"casino-{record_id}", bad.field,
                                          bad.reason, truncate_raw(raw)))
