"""Archives the way users export them, and damage that costs only what it damages.

Fault injection for each case of issue 13 (rows sorted by turn, a byte-order mark, side files in a
directory, truncated or fake gzip, deep nesting, an oversized field, a garbage Parquet file), and
property-based fuzzing: arbitrary truncation, byte flips and interleavings never raise, and every
valid record before the damaged spot comes out unchanged.
"""

import csv
import gzip
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesrl_jax.data.readers import ArchiveReader, RejectSink, list_archive
from salesrl_jax.data.records import Conversation, Turn
from salesrl_jax.data.writers import write_conversations


def _conversations(n: int = 6) -> list[Conversation]:
    return [Conversation(id=f"c{i}", outcome=i % 2, industry="saas", product=None, metadata={},
                         turns=tuple(Turn(speaker="rep" if t % 2 == 0 else "customer", text=f"turn {t} of c{i}")
                                     for t in range(2 + i % 3)))
            for i in range(n)]


def _read(path):
    sink = RejectSink()
    return list(ArchiveReader(path, rejects=sink)), sink


def _csv_rows(conversations):
    return [{"conversation_id": c.id, "turn_index": t, "speaker": turn.speaker, "text": turn.text,
             "outcome": c.outcome, "industry": c.industry}
            for c in conversations for t, turn in enumerate(c.turns)]


def _write_csv(path, rows, bom=False):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode())


def test_csv_sorted_by_turn_keeps_every_conversation_whole(tmp_path):
    conversations = _conversations(10)
    rows = sorted(_csv_rows(conversations), key=lambda r: (r["turn_index"], r["conversation_id"]))
    _write_csv(tmp_path / "by_turn.csv", rows)
    read, sink = _read(tmp_path / "by_turn.csv")
    assert sink.count == 0
    assert [c.id for c in read] == [c.id for c in conversations]
    assert [c.turns for c in read] == [c.turns for c in conversations]


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    conversations = _conversations(3)
    _write_csv(tmp_path / "excel.csv", _csv_rows(conversations), bom=True)
    read, sink = _read(tmp_path / "excel.csv")
    assert sink.count == 0 and [c.id for c in read] == ["c0", "c1", "c2"]


def test_jsonl_with_a_byte_order_mark_is_read(tmp_path):
    write_conversations(tmp_path / "a.jsonl", _conversations(2))
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    read, sink = _read(path)
    assert sink.count == 0 and len(read) == 2


def test_a_directory_names_everything_it_does_not_read(tmp_path):
    write_conversations(tmp_path / "part-0.jsonl", _conversations(4)[:2])
    write_conversations(tmp_path / "sales_manifest_2024.jsonl", _conversations(4)[2:])  # a shard, whatever its name
    (tmp_path / "notes.txt").write_text("not an archive")
    (tmp_path / "part-1.jsonl.bak").write_text("{}")
    (tmp_path / "more").mkdir()
    write_conversations(tmp_path / "more" / "part-2.jsonl", _conversations(6)[4:])
    (tmp_path / "manifest.json").write_text("{}")  # the library's own side files: neither read nor reported
    (tmp_path / "x.rejects.jsonl").write_text("{}\n")
    listing = list_archive(tmp_path)
    assert [p.name for p in listing.files] == ["part-0.jsonl", "sales_manifest_2024.jsonl"]
    assert sorted(p.name for p, _ in listing.skipped) == ["more", "notes.txt", "part-1.jsonl.bak"]
    read, sink = _read(tmp_path)
    assert [c.id for c in read] == ["c0", "c1", "c2", "c3"]
    reasons = {p.file.rsplit("/", 1)[-1]: p.reason for p in sink.first}
    assert "subdirectory" in reasons["more"] and "not an archive file" in reasons["notes.txt"]


def test_a_truncated_gzip_keeps_the_records_before_the_damage(tmp_path):
    conversations = _conversations(200)
    path = tmp_path / "a.jsonl.gz"
    write_conversations(path, conversations)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    read, sink = _read(path)
    assert 0 < len(read) < 200 and read == conversations[: len(read)]
    assert sink.count == 1 and str(path) in str(sink.first[0]) and "before this point" in sink.first[0].reason


def test_a_file_named_gz_that_is_not_gzip_is_set_aside_by_name(tmp_path):
    write_conversations(tmp_path / "good.jsonl", _conversations(2))
    (tmp_path / "bad.jsonl.gz").write_text('{"id": "x"}\n')
    (tmp_path / "bad.csv.gz").write_text("conversation_id,text\nx,hi\n")
    read, sink = _read(tmp_path)
    assert [c.id for c in read] == ["c0", "c1"]
    assert sorted(p.file.rsplit("/", 1)[-1] for p in sink.first) == ["bad.csv.gz", "bad.jsonl.gz"]
    assert all("gzip" in p.reason.lower() for p in sink.first)


def test_a_deeply_nested_line_is_one_bad_line(tmp_path):
    conversations = _conversations(3)
    path = tmp_path / "a.jsonl"
    write_conversations(path, conversations)
    lines = path.read_text().splitlines()
    lines.insert(1, "[" * 100_000 + "]" * 100_000)
    path.write_text("\n".join(lines) + "\n")
    read, sink = _read(path)
    assert read == conversations
    assert sink.count == 1 and sink.first[0].location == "line 2" and "nested" in sink.first[0].reason


def test_an_oversized_csv_field_costs_its_conversation_only(tmp_path):
    rows = _csv_rows(_conversations(3))
    rows[2]["text"] = "x" * 200_000  # c1's first turn: over 128 KiB
    _write_csv(tmp_path / "big.csv", rows)
    read, sink = _read(tmp_path / "big.csv")
    assert [c.id for c in read] == ["c0", "c2"]
    assert sink.count == 1 and sink.first[0].record_id == "c1" and sink.first[0].field == "text"


def test_a_garbage_parquet_file_is_set_aside_by_name(tmp_path):
    write_conversations(tmp_path / "a.jsonl", _conversations(2))
    (tmp_path / "b.parquet").write_bytes(b"PAR1 not really parquet")
    read, sink = _read(tmp_path)
    assert [c.id for c in read] == ["c0", "c1"]
    assert sink.count == 1 and sink.first[0].file.endswith("b.parquet") and "Parquet" in sink.first[0].reason


# --- fuzzing ----------------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CONVERSATIONS = _conversations(8)


def _jsonl_bytes() -> bytes:
    return b"".join(json.dumps(c.to_dict()).encode() + b"\n" for c in CONVERSATIONS)


def _records_before(data: bytes, spot: int) -> list[Conversation]:
    """The conversations whose whole line ends before byte ``spot``."""
    return CONVERSATIONS[: data[:spot].count(b"\n")]


@FUZZ
@given(st.data())
def test_fuzz_jsonl_truncation_and_flips(tmp_path, data):
    raw = bytearray(_jsonl_bytes())
    spot = data.draw(st.integers(0, len(raw) - 1), label="spot")
    if data.draw(st.booleans(), label="truncate"):
        damaged = bytes(raw[:spot])
    else:
        for offset in range(data.draw(st.integers(1, 8), label="flips")):
            if spot + offset < len(raw):
                raw[spot + offset] ^= data.draw(st.integers(1, 255), label="mask")
        damaged = bytes(raw)
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(damaged)
    read, sink = _read(path)  # never raises
    before = _records_before(damaged, spot)
    assert read[: len(before)] == before
    assert len(read) + sink.count >= len(before)


@FUZZ
@given(st.data())
def test_fuzz_gzip_truncation(tmp_path, data):
    compressed = gzip.compress(_jsonl_bytes() * 20, mtime=0)
    cut = data.draw(st.integers(0, len(compressed)), label="cut")
    path = tmp_path / "fuzz.jsonl.gz"
    path.write_bytes(compressed[:cut])
    read, sink = _read(path)  # never raises
    expected = CONVERSATIONS * 20
    assert read == expected[: len(read)] or not read  # every record read is the record written there
    assert cut in (0, len(compressed)) or sink.count >= 1  # an empty file holds no records; any other cut is said


@FUZZ
@given(st.permutations(list(range(len(_csv_rows(CONVERSATIONS))))))
def test_fuzz_csv_any_row_order(tmp_path, order):
    rows = _csv_rows(CONVERSATIONS)
    _write_csv(tmp_path / "shuffled.csv", [rows[i] for i in order])
    read, sink = _read(tmp_path / "shuffled.csv")
    assert sink.count == 0
    assert sorted(read, key=lambda c: c.id) == sorted(CONVERSATIONS, key=lambda c: c.id)


@FUZZ
@given(st.data())
def test_fuzz_csv_flips_never_raise(tmp_path, data):
    rows = _csv_rows(CONVERSATIONS)
    _write_csv(tmp_path / "x.csv", rows)
    raw = bytearray((tmp_path / "x.csv").read_bytes())
    for _ in range(data.draw(st.integers(1, 6), label="flips")):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    (tmp_path / "x.csv").write_bytes(bytes(raw))
    read, sink = _read(tmp_path / "x.csv")  # never raises
    for conv in read:
        original = next((c for c in CONVERSATIONS if c.id == conv.id), None)
        assert original is None or conv.num_turns <= original.num_turns + 2


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_a_truncated_csv_gz_keeps_the_rows_before(tmp_path, cut):
    rows = _csv_rows(_conversations(300))
    _write_csv(tmp_path / "a.csv", rows)
    data = gzip.compress((tmp_path / "a.csv").read_bytes(), mtime=0)
    path = tmp_path / "a.csv.gz"
    path.write_bytes(data[: int(len(data) * cut)])
    read, sink = _read(path)
    assert read and read == _conversations(300)[: len(read)] or read[-1].num_turns <= 4
    assert any("before this point" in p.reason for p in sink.first)
