"""Round trips through every archive format, and the tolerant input shapes."""

import gzip
import json
import pickle

import pytest

from salesrl_jax.data.readers import ArchiveReader, detect_format, read_conversations
from salesrl_jax.data.records import Conversation, Turn, normalize_speaker
from salesrl_jax.data.writers import ArchiveWriter, write_conversations


def _sample() -> list[Conversation]:
    return [
        Conversation(
            id="c1",
            turns=(Turn("rep", "Hi, thanks for joining.", 0.0, 2.5, "opening", 0.41),
                   Turn("customer", "Sure, what's the price?", 3.1, 1.9, "ask_question", 0.45),
                   Turn("rep", "It is $49 per seat, with a 5% discount — café ☕ included.", 5.5, 4.0)),
            outcome=1, industry="saas", product="CloudDesk CRM", metadata={"source": "test", "n": 3},
        ),
        Conversation(id="c2", turns=(Turn("rep", "Hello?"), Turn("customer", "Not interested, thanks."))),
        Conversation(id="c3", turns=(Turn("customer", "Line one,\nline two, \"quoted\"."),), outcome=0),
    ]


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.csv", "a.csv.gz", "a.parquet"])
def test_round_trip_every_format(tmp_path, name):
    path = tmp_path / name
    assert write_conversations(path, _sample()) == 3
    assert list(read_conversations(path)) == _sample()


def test_directory_of_shards_reads_in_order_and_skips_side_files(tmp_path):
    write_conversations(tmp_path / "part-0.jsonl", _sample()[:2])
    write_conversations(tmp_path / "part-1.parquet", _sample()[2:])
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "x.rejects.jsonl").write_text("{}\n")
    assert [c.id for c in read_conversations(tmp_path)] == ["c1", "c2", "c3"]


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with ArchiveWriter(path) as writer:
            writer.write(_sample()[0])
            raise RuntimeError("killed")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_byte_stable(tmp_path):
    write_conversations(tmp_path / "a.jsonl.gz", _sample())
    write_conversations(tmp_path / "b.jsonl.gz", _sample())
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_chat_format_and_aliases(tmp_path):
    records = [
        {"conversation_id": 7, "messages": [
            {"role": "system", "content": "You are a sales assistant."},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi! Want a demo?"}]},
            {"role": "user", "content": "Yes please"}], "converted": True},
        {"id": "x", "turns": [{"speaker": "Sales Rep", "message": "Hello"}, {"speaker": "Prospect", "message": "Hi"},
                              {"speaker": "persuadee", "text": "ok", "timestamp": "12.5"}], "label": "0"},
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    first, second = read_conversations(path)
    assert first.id == "7" and first.outcome == 1
    assert [t.speaker for t in first.turns] == ["rep", "customer"]
    assert first.turns[0].text == "Hi! Want a demo?"
    assert first.metadata["skipped_system_turns"] == 1
    assert [t.speaker for t in second.turns] == ["rep", "customer", "customer"]
    assert second.turns[2].start_time == 12.5 and second.outcome == 0


def test_csv_rows_are_ordered_by_turn_index(tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text("conversation_id,turn_index,speaker,text,outcome\n"
                    "a,1,customer,second,1\na,0,agent,first,1\nb,0,seller,only,\n")
    a, b = read_conversations(path)
    assert [t.text for t in a.turns] == ["first", "second"] and a.outcome == 1
    assert b.outcome is None and b.turns[0].speaker == "rep"


def test_csv_rows_read_the_column_names_the_nested_form_reads(tmp_path):
    """A CRM-style export (``call_id``, ``turn``, ``role``, ``utterance``, a ``won`` column of yes/no) reads as its
    JSONL with the usual names does: every alias of the nested form is a row's column too."""
    rows = tmp_path / "calls.csv"
    rows.write_text("call_id,turn,role,utterance,won\n"
                    "c1,1,client,Sounds good,yes\nc1,0,agent,Want a demo?,yes\nc2,0,author x,hi,no\n"
                    "c3,0,agent,hello,\n")
    nested = tmp_path / "calls.jsonl"
    nested.write_text(json.dumps({"id": "c1", "outcome": 1, "turns": [{"speaker": "rep", "text": "Want a demo?"},
                                                                       {"speaker": "customer", "text": "Sounds good"}]})
                      + "\n" + json.dumps({"id": "c3", "turns": [{"speaker": "rep", "text": "hello"}]}) + "\n")
    reader = ArchiveReader(rows)
    read = list(reader)
    assert read == list(read_conversations(nested))
    (problem,) = reader.rejects.first  # c2's speaker is no known role: set aside, named
    assert problem.record_id == "c2" and problem.field == "role" and "unknown speaker" in problem.reason
    # A per-turn column with an outcome's name that is not one (dialogue-act labels) is named, with the way out.
    acts = tmp_path / "acts.csv"
    acts.write_text("id,turn,speaker,text,label,closed\na,0,rep,hi,greet,1\na,1,customer,ok,agree,1\n")
    reader = ArchiveReader(acts)
    assert list(reader) == []
    (problem,) = reader.rejects.first
    assert problem.field == "label" and "--label-key" in problem.reason
    from salesrl_jax.data.validation import Limits

    assert [c.outcome for c in read_conversations(acts, limits=Limits(label_key="closed"))] == [1]


def test_speaker_aliases():
    assert normalize_speaker("  Sales-Rep ") == "rep"
    assert normalize_speaker("BUYER") == "customer"
    assert normalize_speaker("narrator") is None
    assert normalize_speaker(3) is None


def test_a_diarized_export_reads_once_its_speakers_are_named(tmp_path):
    """``SPEAKER_00`` is no role; `salesrl convert archive --speaker NAME=ROLE` names it (before the usual aliases,
    whatever its case, spaces or hyphens), and a speaker still unnamed is set aside with the option to use."""
    from salesrl_jax.cli import main
    from salesrl_jax.data.records import parse_speaker_names

    names = parse_speaker_names(["SPEAKER_00=rep", "Speaker 01 = Customer", "Agent=customer"])
    assert names == {"speaker_00": "rep", "speaker_01": "customer", "agent": "customer"}
    assert normalize_speaker("speaker-01", names) == "customer" and normalize_speaker("AGENT", names) == "customer"
    assert normalize_speaker("agent") == "rep" and normalize_speaker("SPEAKER_00") is None
    for bad in ("SPEAKER_00", "=rep", "SPEAKER_00=boss"):
        with pytest.raises(ValueError, match="expected NAME=rep or NAME=customer"):
            parse_speaker_names([bad])
    source = tmp_path / "diarized.jsonl"
    source.write_text(json.dumps({"id": "d1", "won": "yes", "turns": [
        {"speaker": "SPEAKER_00", "text": "Hi, Dana from Acme."}, {"speaker": "Speaker 01", "text": "Go on."}]})
        + "\n" + json.dumps({"id": "d2", "won": "no", "turns": [{"speaker": "SPEAKER_02", "text": "Who?"}]}) + "\n")
    main(["convert", "archive", "--data", str(source), "--out", str(tmp_path / "out.jsonl"),
          "--speaker", "SPEAKER_00=rep", "speaker-01=customer"])
    (conv,) = read_conversations(tmp_path / "out.jsonl")
    assert conv.id == "d1" and conv.outcome == 1 and [t.speaker for t in conv.turns] == ["rep", "customer"]
    (reject,) = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert reject["record_id"] == "d2" and "--speaker SPEAKER_02=rep" in reject["reason"]


def test_detect_format_names_the_file():
    assert detect_format("x/y.JSONL.GZ") == "jsonl"
    with pytest.raises(ValueError, match="y.txt"):
        detect_format("x/y.txt")


def test_reading_streams(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for i in range(3000):
            handle.write(json.dumps({"id": i, "turns": [{"speaker": "rep", "text": f"t{i}"}]}) + "\n")
    reader = ArchiveReader(path)
    it = iter(reader)
    next(it)
    assert reader.stats.conversations == 1  # nothing read ahead beyond what was asked for
    assert sum(1 for _ in it) == 2999


def test_nested_parquet_one_row_per_conversation(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": ["n1", "n2"],
        "outcome": [1, None],
        "turns": [[{"speaker": "agent", "text": "Hi"}, {"speaker": "client", "text": "Hello"}],
                  [{"speaker": "rep", "text": "Anyone there?"}]],
    })
    pq.write_table(table, tmp_path / "nested.parquet")
    first, second = read_conversations(tmp_path / "nested.parquet")
    assert first.outcome == 1 and [t.speaker for t in first.turns] == ["rep", "customer"]
    assert second.outcome is None and second.turns[0].text == "Anyone there?"


def test_estimate_turns_for_progress_bars(tmp_path):
    from salesrl_jax.data.readers import estimate_turns
    from salesrl_jax.sim.config import SimulatorConfig
    from salesrl_jax.sim.generate import generate

    generate(SimulatorConfig(num_conversations=50, seed=2), tmp_path / "syn", fmt="parquet", workers=1)
    conversations = list(read_conversations(tmp_path / "syn"))
    turns = sum(c.num_turns for c in conversations)
    assert estimate_turns(tmp_path / "syn") == turns  # the simulator's manifest
    for name in ("a.parquet", "a.csv"):
        write_conversations(tmp_path / name, conversations)
        assert estimate_turns(tmp_path / name) == turns  # exact: row counts
    write_conversations(tmp_path / "a.jsonl", conversations)
    assert estimate_turns(tmp_path / "a.jsonl") == turns  # 50 lines < 200 sampled: exact here
    write_conversations(tmp_path / "a.jsonl.gz", conversations)
    assert estimate_turns(tmp_path / "a.jsonl.gz") is None


def test_records_pickle_whole_for_worker_processes():
    # Worker processes (`salesrl score`, `salesrl embed`) receive conversations pickled: every field must survive,
    # the unset ones as None, the metadata read-only again.
    conversation = Conversation("c1", (Turn("rep", "Hi there", 0.0, 2.5, "greet", 0.41), Turn("customer", "Too pricey")),
                                outcome=1, industry="saas", metadata={"source": {"corpus": "x"}})
    again = pickle.loads(pickle.dumps(conversation))
    assert again == conversation and again.turns[1].start_time is None and again.turns[0].oracle_prob == 0.41
    with pytest.raises(TypeError):
        again.metadata["source"] = 1
