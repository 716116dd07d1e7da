"""`salesrl embed`: what the cached arrays hold, resumption after kill -9, no-op reruns, refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from salesrl_jax.arrays import TurnArrays
from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.embed import HashingEmbedder
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.features import conversation_features
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import generate


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "synthetic"
    generate(SimulatorConfig(num_conversations=240, seed=3), out, fmt="parquet", workers=1)
    return out


def _all_arrays(arrays: TurnArrays) -> dict[str, np.ndarray]:
    parts = list(arrays.iter_parts())
    out = {name: np.concatenate([np.asarray(getattr(p, name)) for p in parts])
           for name in ("embeddings", "features", "is_customer", "turn_index", "oracle_prob", "outcome")}
    out["ids"] = np.array([i for p in parts for i in p.ids])
    return out


def test_arrays_hold_what_the_archive_says(archive, tmp_path):
    result = embed_archive(archive, tmp_path / "arrays", EmbedderConfig(dim=64), chunk_conversations=100, workers=1)
    arrays = result.arrays
    conversations = list(read_conversations(archive))
    assert arrays.num_conversations == 240 and len(arrays) == 3 and arrays.part_sizes == [100, 100, 40]
    assert arrays.num_turns == sum(c.num_turns for c in conversations)
    got = _all_arrays(arrays)
    assert list(got["ids"]) == [c.id for c in conversations]
    assert list(got["outcome"]) == [c.outcome for c in conversations]
    texts = [t.text for c in conversations for t in c.turns]
    assert got["embeddings"].dtype == np.float16 and got["embeddings"].shape == (len(texts), 64)
    np.testing.assert_allclose(got["embeddings"], HashingEmbedder(64).embed(texts), atol=1e-3)
    np.testing.assert_array_equal(got["features"], np.concatenate([conversation_features(c.turns) for c in conversations]))
    np.testing.assert_array_equal(got["is_customer"], [t.speaker == "customer" for c in conversations for t in c.turns])
    np.testing.assert_array_equal(got["turn_index"], [i for c in conversations for i in range(c.num_turns)])
    np.testing.assert_allclose(got["oracle_prob"], [t.oracle_prob for c in conversations for t in c.turns], rtol=1e-6)
    part = arrays.part(0)
    assert isinstance(part.embeddings, np.memmap)  # memory-mapped, not loaded
    assert part.industry_names()[:3] == [c.industry for c in conversations[:3]]
    manifest = arrays.manifest
    assert manifest["embedder"]["kind"] == "hashing" and manifest["embedder"]["dim"] == 64
    assert manifest["features"]["names"][0] == "is_customer" and "VADER" in manifest["features"]["definitions"]["sentiment"]
    assert len(manifest["source"]["sha256"]) == 64


def test_rerun_is_a_noop_and_other_arguments_are_refused(archive, tmp_path):
    out = tmp_path / "arrays"
    embed_archive(archive, out, EmbedderConfig(dim=32), chunk_conversations=100, workers=1)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    again = embed_archive(archive, out, EmbedderConfig(dim=32), chunk_conversations=100, workers=1)
    assert again.up_to_date and again.parts_written == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == before
    with pytest.raises(ValueError, match="different dtype"):
        embed_archive(archive, out, EmbedderConfig(dim=32), dtype="float32", chunk_conversations=100, workers=1)
    with pytest.raises(ValueError, match="different embedder"):
        embed_archive(archive, out, EmbedderConfig(dim=48), chunk_conversations=100, workers=1)


def test_worker_count_does_not_change_the_bytes(archive, tmp_path):
    embed_archive(archive, tmp_path / "one", EmbedderConfig(dim=32), chunk_conversations=60, workers=1)
    embed_archive(archive, tmp_path / "two", EmbedderConfig(dim=32), chunk_conversations=60, workers=2)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert one == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    for rel in one:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel


def test_bad_records_are_set_aside_and_counted(archive, tmp_path):
    conversations = list(read_conversations(archive))[:20]
    path = tmp_path / "mixed.jsonl"
    write_conversations(path, conversations)
    lines = path.read_text().splitlines()
    broken = json.loads(lines[5])
    broken["turns"][0]["text"] = 7  # not a string
    lines[5] = json.dumps(broken)
    path.write_text("\n".join(lines) + "\n")
    result = embed_archive(path, tmp_path / "arrays", EmbedderConfig(dim=16), workers=1)
    assert result.arrays.num_conversations == 19 and result.rejected == 1
    rejected = [json.loads(line) for line in (tmp_path / "arrays" / "rejects.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["record_id"] == broken["id"] and "text" in rejected[0]["field"]


def test_embedding_cache_serves_a_second_build(archive, tmp_path):
    cache = tmp_path / "cache.sqlite"
    first = embed_archive(archive, tmp_path / "a", EmbedderConfig(dim=16), workers=1, cache_path=cache)
    assert first.cache.misses > 0
    second = embed_archive(archive, tmp_path / "b", EmbedderConfig(dim=16), workers=1, cache_path=cache)
    assert second.cache.misses == 0 and second.cache.hit_rate == 1.0
    np.testing.assert_array_equal(_all_arrays(first.arrays)["embeddings"], _all_arrays(second.arrays)["embeddings"])


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path):
    archive = tmp_path / "synthetic"
    generate(SimulatorConfig(num_conversations=3000, seed=5), archive, fmt="parquet", workers=1)
    args = ["embed", "--data", str(archive), "--embedder.dim", "32", "--chunk-conversations", "40", "--workers", "1"]
    exe = str(Path(sys.executable).with_name("salesrl"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([exe, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "part-00003").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists(), "the run finished before it could be killed"
    with pytest.raises(ValueError, match="incomplete"):
        TurnArrays.open(killed)
    resumed = subprocess.run([exe, *args, "--out", str(killed)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "reused from an interrupted run" in resumed.stdout
    straight = embed_archive(archive, tmp_path / "straight", EmbedderConfig(dim=32), chunk_conversations=40, workers=1)
    got, want = _all_arrays(TurnArrays.open(killed)), _all_arrays(straight.arrays)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert not list(killed.glob(".part-*"))  # no half-written part was left visible... or lying around
    again = subprocess.run([exe, *args, "--out", str(killed)], capture_output=True, text=True, timeout=300)
    assert "nothing to do" in again.stdout


def test_the_label_key_chooses_the_outcome_and_is_part_of_the_build(tmp_path):
    turns = [{"speaker": "rep", "text": "hello"}, {"speaker": "customer", "text": "sounds good"}]
    path = tmp_path / "crm.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "outcome": 0, "metadata": {"won": i % 2}, "turns": turns}) + "\n"
                            for i in range(6)))
    arrays = embed_archive(path, tmp_path / "a", EmbedderConfig(dim=16), workers=1, label_key="metadata.won").arrays
    assert [int(o) for p in arrays.iter_parts() for o in p.outcome] == [0, 1, 0, 1, 0, 1]
    plain = embed_archive(path, tmp_path / "b", EmbedderConfig(dim=16), workers=1).arrays
    assert [int(o) for p in plain.iter_parts() for o in p.outcome] == [0] * 6
    with pytest.raises(ValueError, match="different label_key"):
        embed_archive(path, tmp_path / "a", EmbedderConfig(dim=16), workers=1)


def test_the_labels_note_counts_reasons_by_kind_and_shows_one_whole(tmp_path):
    """Unknown speakers SPEAKER_01, _02, _03 are one reason (as `RejectSink` counts them), more common than the
    missing text written first; the note shows the commonest kind's first reason in full, and the label's field."""
    from salesrl_jax.embed.config import EmbedderConfig

    lines = [{"speaker": "rep", "text": "hello"}]
    records = [{"id": "a", "turns": [{"speaker": "rep"}]}]  # missing text
    records += [{"id": f"s{i}", "turns": [{"speaker": f"SPEAKER_0{i}", "text": "hi"}]} for i in (1, 2, 3)]
    records += [{"id": "ok", "turns": lines}]  # read, without an outcome
    archive = tmp_path / "in.jsonl"
    archive.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = embed_archive(archive, tmp_path / "arrays", EmbedderConfig(dim=16), workers=1, label_key="won")
    note = result.arrays.labels_note()
    assert note.startswith("1 conversations read, 0 with an outcome, 4 records set aside (reasons in ")
    assert ("the most common, field 'turns[0].speaker': unknown speaker 'SPEAKER_01' (name its role with "
            "--speaker SPEAKER_01=rep or =customer))") in note
    assert "the outcome is read from 'won'" in note
