"""``--speaker NAME=ROLE`` on every command that reads an archive: a diarized export (``SPEAKER_00``, ``SPEAKER_01``)
reads in `split`, `embed`, `crossval` and `score` exactly as its converted form does, the names are part of each run's
record (a rerun that names them otherwise is refused), and without them every record is set aside as one reason."""

import json

import numpy as np
import pytest

from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.baselines.prefixes import build_prefixes
from salesrl_jax.cli import main
from salesrl_jax.data.readers import RejectSink, read_conversations, reason_kind
from salesrl_jax.data.validation import RecordProblem
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.pipelines.crossval import crossval

NAMES = ["SPEAKER_00=rep", "speaker-01=customer"]
LINES = [("SPEAKER_00", "rep", "Hi, this is Dana from Acme, do you have a minute?"),
         ("SPEAKER_01", "customer", "Sure, what is it about? How much does it cost?"),
         ("SPEAKER_00", "rep", "Our plan starts at forty dollars a month."),
         ("SPEAKER_01", "customer", "That sounds good, send me the contract.")]


def _archive(path, diarized: bool, conversations: int = 6):
    """``conversations`` calls (outcomes alternating, later ones shorter), speakers as a diarizer or as roles."""
    path.write_text("".join(json.dumps({"id": f"call{i}", "won": "yes" if i % 2 else "no", "turns": [
        {"speaker": name if diarized else role, "text": text} for name, role, text in LINES[:4 - i % 3]]}) + "\n"
        for i in range(conversations)))
    return path


def _arrays(arrays) -> dict[str, np.ndarray]:
    parts = list(arrays.iter_parts())
    return {name: np.concatenate([np.asarray(getattr(p, name)) for p in parts])
            for name in ("embeddings", "features", "is_customer", "turn_index", "outcome")}


def test_embed_reads_named_speakers_as_the_converted_roles_and_records_them(tmp_path):
    diarized, roles = _archive(tmp_path / "diarized.jsonl", True), _archive(tmp_path / "roles.jsonl", False)
    want = _arrays(embed_archive(roles, tmp_path / "roles", EmbedderConfig(dim=16), workers=1).arrays)
    got = embed_archive(diarized, tmp_path / "named", EmbedderConfig(dim=16), workers=1, speakers=NAMES).arrays
    assert got.num_conversations == 6 and set(want) == set(_arrays(got))
    for name, values in _arrays(got).items():
        np.testing.assert_array_equal(values, want[name], err_msg=name)
    assert json.loads((tmp_path / "named" / "build.json").read_text())["speakers"] == {
        "speaker_00": "rep", "speaker_01": "customer"}
    # What reads the archive again beside its arrays (a study's text baselines) reads it as the build did.
    assert got.reading().speaker_names == {"speaker_00": "rep", "speaker_01": "customer"}
    table = build_prefixes(read_conversations(diarized, limits=got.reading()), got, diarized)
    assert table.ids == [f"call{i}" for i in range(6)]
    with pytest.raises(ValueError, match="'call0' of .* is missing"):
        build_prefixes(read_conversations(diarized), got, diarized)
    with pytest.raises(ValueError, match="different speakers"):
        embed_archive(diarized, tmp_path / "named", EmbedderConfig(dim=16), workers=1, speakers=["SPEAKER_00=rep"])
    unnamed = embed_archive(diarized, tmp_path / "unnamed", EmbedderConfig(dim=16), workers=1)
    assert unnamed.rejected == 6 and unnamed.arrays.num_conversations == 0
    assert "--speaker SPEAKER_00=rep" in unnamed.arrays.labels_note()
    with pytest.raises(ValueError, match="'SPEAKER_00=boss': expected NAME=rep or NAME=customer"):
        embed_archive(diarized, tmp_path / "bad", EmbedderConfig(dim=16), workers=1, speakers=["SPEAKER_00=boss"])


def test_split_and_crossval_take_the_names_on_the_command_line(tmp_path):
    diarized = _archive(tmp_path / "diarized.jsonl", True)
    main(["split", "--data", str(diarized), "--out", str(tmp_path / "split"), "--test-fraction", "0.5",
          "--speaker", *NAMES])
    read = [c for name in ("development", "test") for c in read_conversations(tmp_path / "split" / f"{name}.jsonl")]
    assert sorted(c.id for c in read) == [f"call{i}" for i in range(6)]
    assert all([t.speaker for t in c.turns] == ["rep", "customer", "rep", "customer"][:c.num_turns] for c in read)
    # Read with the names, the six labelled calls are there (7 folds is one too many: refused before any training).
    with pytest.raises(ValueError, match="6 labelled conversations cannot fill 7 folds"):
        crossval(diarized, tmp_path / "cv", folds=7, baselines=False, progress=False, speakers=NAMES)
    assert json.loads((tmp_path / "cv" / "crossval.json").read_text())["speakers"]["speaker_01"] == "customer"
    with pytest.raises(ValueError, match="different speakers"):
        crossval(diarized, tmp_path / "cv", folds=7, baselines=False, progress=False)
    with pytest.raises(ValueError) as err:
        crossval(diarized, tmp_path / "cv-unnamed", folds=3, baselines=False, progress=False)
    assert "0 labelled conversations" in str(err.value) and "--speaker SPEAKER_00=rep" in str(err.value)


def test_score_reads_named_speakers_as_the_converted_roles(tiny_trained, tmp_path):
    diarized, roles = _archive(tmp_path / "diarized.jsonl", True), _archive(tmp_path / "roles.jsonl", False)
    main(["score", "--model", str(tiny_trained), "--data", str(roles), "--out", str(tmp_path / "scored-roles.jsonl"),
          "--workers", "1"])
    main(["score", "--model", str(tiny_trained), "--data", str(diarized), "--out", str(tmp_path / "scored-named.jsonl"),
          "--workers", "1", "--speaker", *NAMES, "--label-key", "won"])

    def rows(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    want, got = rows(tmp_path / "scored-roles.jsonl"), rows(tmp_path / "scored-named.jsonl")
    assert len(got) == sum(4 - i % 3 for i in range(6)) and got == want
    assert [c["outcome"] for c in rows(tmp_path / "scored-named.conversations.jsonl")] == [0, 1, 0, 1, 0, 1]


def test_reasons_that_differ_only_in_their_values_count_as_one():
    """`reason_kind` drops quoted values wherever they appear, a trailing ``, got VALUE`` and numbers, and keeps the
    rest whole (commas included): the summary's lines group what a person would call one problem."""
    unknown = [f"unknown speaker {name!r} (name its role with --speaker {name}=rep or =customer)"
               for name in ("SPEAKER_01", "Dana O'Neil", "x")]
    assert len({reason_kind(r) for r in unknown}) == 1
    assert reason_kind("text has 25000 characters, more than the limit of 20000") == reason_kind(
        "text has 31 characters, more than the limit of 30") == "text has N characters, more than the limit of N"
    assert reason_kind("outcome must be 0 or 1 (or true/false, yes/no), got 'maybe'") == reason_kind(
        "outcome must be 0 or 1 (or true/false, yes/no), got 7") == "outcome must be N or N (or true/false, yes/no)"
    missing = "missing text (one of text, message, content, utterance, body, value)"
    assert reason_kind(missing) == missing and reason_kind("missing speaker (one of speaker, role)") != missing
    sink = RejectSink()
    for i, reason in enumerate(unknown + [missing]):
        sink.add(RecordProblem("f.jsonl", f"line {i + 1}", f"c{i}", "turns[0].speaker", reason))
    assert "       3  unknown speaker '…' (name its role with --speaker …=rep or =customer)" in sink.summary()
