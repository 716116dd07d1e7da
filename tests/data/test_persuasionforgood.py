"""Conversion of the committed PersuasionForGood sample (tests do not need ../shared)."""

import csv
from pathlib import Path

import pytest

from salesrl_jax.data.persuasionforgood import read_persuasionforgood
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations

FIXTURE = Path(__file__).parent.parent / "fixtures" / "persuasionforgood"


def test_converts_fixture():
    convs = list(read_persuasionforgood(FIXTURE))
    info = {row["B2"]: float(row["B6"]) for row in csv.DictReader(open(FIXTURE / "full_info.csv")) if row["B4"] == "1"}
    assert len(convs) == 5
    for conv in convs:
        assert conv.outcome == int(info[conv.id] > 0)
        assert conv.metadata["low_quality"] == conv.id.startswith("BAD_")
        assert conv.turns[0].speaker == "rep"
        # consecutive sentences of one speaker are merged: speakers alternate or repeat across turns only
        assert all(t.text.strip() for t in conv.turns)
    assert {c.outcome for c in convs} == {0, 1}


def test_merges_sentences_of_one_turn():
    first = next(read_persuasionforgood(FIXTURE))
    rows = [r for r in csv.DictReader(open(FIXTURE / "full_dialog.csv")) if r["B2"] == first.id]
    turn0 = [r["Unit"].strip() for r in rows if r["Turn"] == "0" and r["B4"] == "0"]
    assert first.turns[0].text == " ".join(turn0)


def test_drop_low_quality_and_round_trip(tmp_path):
    kept = list(read_persuasionforgood(FIXTURE, drop_low_quality=True))
    assert len(kept) == 4 and not any(c.id.startswith("BAD_") for c in kept)
    write_conversations(tmp_path / "p4g.parquet", kept)
    assert list(read_conversations(tmp_path / "p4g.parquet")) == kept


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="full_dialog.csv"):
        list(read_persuasionforgood(tmp_path))
