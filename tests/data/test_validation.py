"""Every kind of bad input: a clear message naming file, line/row, record and field; nothing lost."""

import json

import pytest

from salesrl_jax.data.readers import ArchiveReader, RejectSink
from salesrl_jax.data.validation import BadRecordError, Limits

GOOD = {"id": "good", "outcome": 1, "turns": [{"speaker": "rep", "text": "Hi"}, {"speaker": "customer", "text": "Yes"}]}


def _jsonl(tmp_path, lines: list[bytes]):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _one_bad(tmp_path, bad_line: bytes, limits=Limits()):
    good2 = dict(GOOD, id="good2")
    path = _jsonl(tmp_path, [json.dumps(GOOD).encode(), bad_line, json.dumps(good2).encode()])
    sink = RejectSink(tmp_path / "rejects.jsonl")
    reader = ArchiveReader(path, rejects=sink, limits=limits)
    ids = [c.id for c in reader]
    sink.close()
    assert ids == ["good", "good2"], "good records before and after a bad one must go through"
    assert sink.count == 1
    problem = sink.first[0]
    assert problem.file == str(path) and problem.location == "line 2"
    written = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert written[0]["reason"] == problem.reason and written[0]["raw"], "the rejects file keeps the raw record"
    return problem


def _record(**changes):
    return json.dumps({**GOOD, "id": "bad", **changes}).encode()


def test_invalid_json(tmp_path):
    problem = _one_bad(tmp_path, b'{"id": "bad", "turns": [')
    assert "invalid JSON" in problem.reason


def test_invalid_utf8(tmp_path):
    problem = _one_bad(tmp_path, b'{"id": "bad", "turns": [{"speaker": "rep", "text": "caf\xe9"}]}')
    assert "UTF-8" in problem.reason


def test_empty_conversation(tmp_path):
    problem = _one_bad(tmp_path, _record(turns=[]))
    assert problem.record_id == "bad" and problem.field == "turns" and "no turns" in problem.reason


def test_empty_text(tmp_path):
    problem = _one_bad(tmp_path, _record(turns=[{"speaker": "rep", "text": "  "}]))
    assert problem.field == "turns[0].text" and "empty" in problem.reason


def test_unknown_speaker(tmp_path):
    problem = _one_bad(tmp_path, _record(turns=[{"speaker": "narrator", "text": "Once upon a time"}]))
    assert problem.field == "turns[0].speaker" and "narrator" in problem.reason


def test_outcome_not_binary(tmp_path):
    problem = _one_bad(tmp_path, _record(outcome=2))
    assert problem.field == "outcome" and "0 or 1" in problem.reason


def test_duplicate_id(tmp_path):
    problem = _one_bad(tmp_path, json.dumps(GOOD).encode())
    assert problem.record_id == "good" and problem.field == "id" and "duplicate" in problem.reason


def test_absurdly_long_turn(tmp_path):
    problem = _one_bad(tmp_path, _record(turns=[{"speaker": "rep", "text": "x" * 101}]), Limits(max_turn_chars=100))
    assert problem.field == "turns[0].text" and "101 characters" in problem.reason


def test_missing_id_and_bad_timestamp(tmp_path):
    problem = _one_bad(tmp_path, json.dumps({"turns": GOOD["turns"]}).encode())
    assert problem.field == "id"
    problem = _one_bad(tmp_path, _record(turns=[{"speaker": "rep", "text": "a", "start_time": -3}]))
    assert problem.field == "turns[0].start_time"


def test_message_names_file_location_record_and_field(tmp_path):
    problem = _one_bad(tmp_path, _record(outcome="maybe"))
    message = str(problem)
    assert "in.jsonl" in message and "line 2" in message and "'bad'" in message and "'outcome'" in message


def test_strict_fails_on_first_bad_record(tmp_path):
    path = _jsonl(tmp_path, [json.dumps(GOOD).encode(), _record(outcome=5)])
    with pytest.raises(BadRecordError, match="line 2"):
        list(ArchiveReader(path, strict=True))


def test_csv_bad_row_sets_aside_the_whole_conversation(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"conversation_id,turn_index,speaker,text,outcome\n"
        b"a,0,rep,hello,1\na,1,customer,hi,1\n"
        b"b,0,rep,hello,0\nb,1,robot,beep,0\n"
        b"c,0,rep,caf\xe9,1\n"
        b"d,0,rep,x,1\nd,0,customer,y,1\n"
        b"e,0,rep,x,1\ne,1,customer,y,0\n"
        b"f,0,rep,fine,1\n"
    )
    sink = RejectSink()
    ids = [c.id for c in ArchiveReader(path, rejects=sink)]
    assert ids == ["a", "f"]
    problems = {p.record_id: p for p in sink.first}
    assert problems["b"].location == "row 5" and problems["b"].field == "speaker"
    assert problems["c"].location == "row 6" and "UTF-8" in problems["c"].reason
    assert "appears more than once" in problems["d"].reason
    assert problems["e"].field == "outcome" and "disagree" in problems["e"].reason


def test_csv_rows_of_a_conversation_need_not_be_adjacent(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("conversation_id,speaker,text\na,rep,one\nb,rep,two\na,customer,three\n")
    sink = RejectSink()
    conversations = list(ArchiveReader(path, rejects=sink))
    assert [c.id for c in conversations] == ["a", "b"]  # in the order of their first row
    assert [t.text for t in conversations[0].turns] == ["one", "three"] and sink.count == 0


def test_csv_without_id_column(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("speaker,text\nrep,hi\n")
    sink = RejectSink()
    assert list(ArchiveReader(path, rejects=sink)) == []
    assert sink.first[0].field == "conversation_id"


def test_a_top_level_meta_object_is_kept_as_metadata(tmp_path):
    from salesrl_jax.data.readers import read_conversations

    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "a", "meta": {"crm": {"closed": True}}, "turns": [{"role": "user", "content": "hi"}]})
                    + "\n")
    (conv,) = read_conversations(path)
    assert conv.metadata == {"crm": {"closed": True}} and conv.outcome is None


def test_the_label_can_be_any_dotted_field(tmp_path):
    from salesrl_jax.cli import main
    from salesrl_jax.data.readers import ArchiveReader, read_conversations
    from salesrl_jax.data.validation import Limits

    turns = [{"speaker": "rep", "text": "hi"}, {"speaker": "customer", "text": "ok"}]
    records = [{"id": "a", "outcome": 0, "metadata": {"donated": 1}, "turns": turns},
               {"id": "b", "meta": {"donated": "false"}, "turns": turns},
               {"id": "c", "metadata": {}, "turns": turns},  # no such field: kept, unlabelled
               {"id": "d", "metadata": {"donated": "maybe"}, "turns": turns}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    reader = ArchiveReader(path, limits=Limits(label_key="metadata.donated"))
    assert [(c.id, c.outcome) for c in reader] == [("a", 1), ("b", None), ("c", None)]  # the raw record's path
    reader = ArchiveReader(path, limits=Limits(label_key="meta.donated"))
    assert [(c.id, c.outcome) for c in reader] == [("a", None), ("b", 0), ("c", None), ("d", None)]
    problems = ArchiveReader(path, limits=Limits(label_key="metadata.donated"))
    list(problems)
    assert [(p.record_id, p.field) for p in problems.rejects.first] == [("d", "metadata.donated")]
    csv_path = tmp_path / "rows.csv"  # a label column of per-turn rows
    csv_path.write_text("conversation_id,turn_index,speaker,text,closed\nx,0,rep,hello,1\nx,1,customer,yes,1\n")
    assert [c.outcome for c in read_conversations(csv_path, limits=Limits(label_key="closed"))] == [1]
    main(["convert", "archive", "--data", str(path), "--out", str(tmp_path / "out.jsonl"),
          "--label-key", "metadata.donated"])
    assert [c.outcome for c in read_conversations(tmp_path / "out.jsonl")] == [1, None, None]


def test_an_outcome_is_0_1_true_false_or_yes_no_and_nothing_else():
    from salesrl_jax.data.validation import FieldError, parse_outcome

    for value, expected in [(1, 1), (0.0, 0), (True, 1), ("true", 1), (" No ", 0), ("YES", 1), ("1.0", 1), ("", None)]:
        assert parse_outcome(value, "won") == expected, value
    for value in ("won", "0.7", 2, "closed"):
        with pytest.raises(FieldError, match="0 or 1 .or true/false, yes/no., got"):
            parse_outcome(value, "won")
