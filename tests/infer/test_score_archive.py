"""`salesrl score`: outputs, rejects with reasons, strict mode, no-op reruns, kill -9 and resume exactly once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from salesrl_jax.cli import main
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.infer.archive import score_archive


@pytest.fixture(scope="module")
def calls(tiny_archive, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calls") / "calls.jsonl"
    write_conversations(path, list(read_conversations(tiny_archive))[:120])
    return path


def test_outputs_per_turn_and_per_conversation(tiny_trained, calls, tmp_path):
    result = score_archive(tiny_trained, calls, tmp_path / "scores.parquet", chunk_conversations=50, workers=1)
    conversations = list(read_conversations(calls))
    turns = pq.read_table(result.outputs["turns"]).to_pylist()
    summary = pq.read_table(result.outputs["conversations"]).to_pylist()
    assert len(turns) == sum(c.num_turns for c in conversations) and len(summary) == len(conversations)
    assert [s["conversation_id"] for s in summary] == [c.id for c in conversations]
    first = summary[0]
    trajectory = [t["probability"] for t in turns if t["conversation_id"] == first["conversation_id"]]
    assert first["trajectory"] == trajectory and first["final_probability"] == trajectory[-1]
    assert first["peak_probability"] == max(trajectory) and first["outcome"] == conversations[0].outcome
    assert all(0 < t["probability"] < 1 and t["uncertainty"] >= 0 for t in turns)
    again = score_archive(tiny_trained, calls, tmp_path / "scores.parquet", chunk_conversations=50, workers=1)
    assert again.up_to_date and not result.outputs["parts"].exists()


def test_the_same_stem_in_another_format_is_scored_not_skipped(tiny_trained, calls, tmp_path):
    first = score_archive(tiny_trained, calls, tmp_path / "scores.jsonl", chunk_conversations=50, workers=1)
    other = score_archive(tiny_trained, calls, tmp_path / "scores.parquet", chunk_conversations=50, workers=1)
    assert not other.up_to_date
    as_jsonl = [json.loads(line) for line in first.outputs["turns"].read_text().splitlines()]
    assert pq.read_table(other.outputs["turns"]).to_pylist() == as_jsonl


BAD_RECORDS = {
    "text is not a string": lambda c: c["turns"][0].update(text=12),
    "unknown speaker": lambda c: c["turns"][1].update(speaker="narrator"),
    "no turns": lambda c: c.update(turns=[]),
    "bad outcome": lambda c: c.update(outcome="maybe"),
    "missing text": lambda c: c["turns"][0].pop("text"),
}


def test_every_bad_record_kind_is_set_aside_with_its_reason(tiny_trained, calls, tmp_path):
    lines = calls.read_text().splitlines()[:20]
    bad_ids = {}
    for i, (kind, spoil) in enumerate(BAD_RECORDS.items()):
        record = json.loads(lines[2 * i])
        spoil(record)
        lines[2 * i] = json.dumps(record)
        bad_ids[record["id"]] = kind
    lines.append(lines[1])  # a duplicate id
    lines.append("{not json")  # a malformed line
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = score_archive(tiny_trained, path, tmp_path / "scores.jsonl", workers=1)
    assert result.conversations == 20 - len(BAD_RECORDS) and result.rejected == len(BAD_RECORDS) + 2
    rejects = [json.loads(line) for line in result.outputs["rejects"].read_text().splitlines()]
    assert {r["record_id"] for r in rejects if r["record_id"] in bad_ids} == set(bad_ids)
    assert all(r["file"] == str(path) and r["reason"] for r in rejects)
    assert any("duplicate" in r["reason"] for r in rejects) and any("JSON" in r["reason"] for r in rejects)
    scored = {json.loads(line)["conversation_id"] for line in result.outputs["conversations"].read_text().splitlines()}
    assert not scored & set(bad_ids) and len(scored) == result.conversations
    with pytest.raises(SystemExit, match="--strict"):
        main(["score", "--model", str(tiny_trained), "--input", str(path), "--output", str(tmp_path / "s2.jsonl"),
              "--strict", "--workers", "1"])


def test_kill_9_and_resume_scores_every_conversation_exactly_once(tiny_trained, tiny_archive, tmp_path):
    calls = tmp_path / "calls.jsonl"
    write_conversations(calls, list(read_conversations(tiny_archive)))
    exe = str(Path(sys.executable).with_name("salesrl"))
    args = ["score", "--model", str(tiny_trained), "--input", str(calls), "--chunk-conversations", "10",
            "--workers", "1"]
    out = tmp_path / "killed" / "scores.jsonl"
    out.parent.mkdir()
    proc = subprocess.Popen([exe, *args, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = out.with_name("scores.parts")
    deadline = time.monotonic() + 240
    while not (parts.exists() and len(list(parts.glob("turns-*.jsonl"))) >= 3):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed"
    resumed = subprocess.run([exe, *args, "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "reused from an interrupted run" in resumed.stdout
    straight = score_archive(tiny_trained, calls, tmp_path / "straight.jsonl", chunk_conversations=10, workers=1)
    assert out.read_bytes() == straight.outputs["turns"].read_bytes()
    assert out.with_name("scores.conversations.jsonl").read_bytes() == straight.outputs["conversations"].read_bytes()
    ids = [json.loads(line)["conversation_id"] for line in straight.outputs["conversations"].read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 600
    assert not parts.exists()


def test_quantized_scoring_stays_close_to_float(tiny_trained, calls, tmp_path):
    exact = score_archive(tiny_trained, calls, tmp_path / "f32.jsonl", workers=1)
    quant = score_archive(tiny_trained, calls, tmp_path / "int8.jsonl", workers=1, quantized=True)
    a = [json.loads(line)["probability"] for line in exact.outputs["turns"].read_text().splitlines()]
    b = [json.loads(line)["probability"] for line in quant.outputs["turns"].read_text().splitlines()]
    assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 0.02
