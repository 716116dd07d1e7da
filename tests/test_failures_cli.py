"""One error path for the command line, and concurrent and repeated runs: every known failure is one line
naming the file and a non-zero exit (a traceback only with --debug); a busy output is refused at once; a
rerun rewrites its rejects and cleans what a killed run left; workers end with their parent."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from salesrl_jax.arrays.store import TurnArrays, part_digest
from salesrl_jax.cli import main
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.infer.archive import score_archive
from salesrl_jax.io.lock import OutputBusyError, claim_output


@pytest.fixture(scope="module")
def calls(tiny_archive, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calls") / "calls.jsonl"
    write_conversations(path, list(read_conversations(tiny_archive))[:40])
    return path


@pytest.fixture
def arrays(tiny_arrays, tmp_path):
    copy = tmp_path / "arrays"
    shutil.copytree(tiny_arrays, copy)
    return copy


def _one_line(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message
    return message


def _refresh_digests(arrays: Path) -> None:
    """Record the parts' current digests, as if the edited arrays had been built so (by hand, or by an old version)."""
    manifest = json.loads((arrays / "manifest.json").read_text())
    for entry in manifest["parts"]:
        entry["sha256"] = part_digest(arrays / entry["name"])
    (arrays / "manifest.json").write_text(json.dumps(manifest))


def test_damaged_arrays_are_refused_by_their_digest(tiny_trained, arrays, tmp_path, capsys):
    target = arrays / "part-00000" / "embeddings.npy"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01  # one bit of one embedding
    target.write_bytes(bytes(data))
    message = _one_line(["evaluate", "--model", str(tiny_trained), "--data", str(arrays), "--out", str(tmp_path / "e")],
                        capsys)
    assert str(arrays / "part-00000") in message and "digest" in message


def test_truncated_npy_is_one_line_naming_the_file(tiny_trained, arrays, tmp_path, capsys):
    target = arrays / "part-00000" / "embeddings.npy"
    target.write_bytes(target.read_bytes()[:1000])
    _refresh_digests(arrays)
    message = _one_line(["evaluate", "--model", str(tiny_trained), "--data", str(arrays), "--out", str(tmp_path / "e")],
                        capsys)
    assert str(target) in message


def test_a_manifest_claiming_another_dimension_is_named(tiny_trained, arrays, tmp_path, capsys):
    manifest = json.loads((arrays / "manifest.json").read_text())
    manifest["embedder"]["dim"] = 2 * manifest["embedder"]["dim"]
    (arrays / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="part-00000: does not match .*manifest.json"):
        TurnArrays.open(arrays).part(0)


def test_a_truncated_manifest_is_named(tiny_trained, arrays, tmp_path, capsys):
    (arrays / "manifest.json").write_text((arrays / "manifest.json").read_text()[:50])
    message = _one_line(["evaluate", "--model", str(tiny_trained), "--data", str(arrays), "--out", str(tmp_path / "e")],
                        capsys)
    assert str(arrays / "manifest.json") in message and "not valid JSON" in message


def test_outcome_codes_other_than_0_or_1_are_refused_before_metrics(tiny_trained, arrays, tmp_path, capsys):
    for part in sorted(arrays.glob("part-*")):
        outcome = np.load(part / "outcome.npy")
        np.save(part / "outcome.npy", np.where(outcome == 1, 7, outcome).astype(np.int8))
    _refresh_digests(arrays)
    message = _one_line(["evaluate", "--model", str(tiny_trained), "--data", str(arrays), "--out", str(tmp_path / "e")],
                        capsys)
    assert "outcomes must be 0 or 1, found [7]" in message


def test_a_single_class_evaluation_says_so(tiny_trained, arrays, tmp_path, capsys):
    for part in sorted(arrays.glob("part-*")):
        outcome = np.load(part / "outcome.npy")
        np.save(part / "outcome.npy", np.where(outcome >= 0, 0, outcome).astype(np.int8))
    _refresh_digests(arrays)
    message = _one_line(["evaluate", "--model", str(tiny_trained), "--data", str(arrays), "--out", str(tmp_path / "e")],
                        capsys)
    assert "every evaluated conversation has outcome 0" in message


def test_an_unwritable_output_is_one_line(tiny_trained, calls, tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    message = _one_line(["score", "--model", str(tiny_trained), "--data", str(calls),
                         "--out", str(tmp_path / "file" / "scores.jsonl"), "--workers", "1"], capsys)
    assert str(tmp_path / "file") in message


def test_debug_shows_the_traceback(tiny_trained, tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["evaluate", "--model", str(tiny_trained), "--data", str(tmp_path / "missing"), "--out",
              str(tmp_path / "e"), "--debug"])


def test_a_second_run_on_a_busy_output_fails_at_once(tiny_trained, calls, tmp_path, capsys):
    out = tmp_path / "scores.jsonl"
    with claim_output(out):  # another run holds it
        start = time.monotonic()
        message = _one_line(["score", "--model", str(tiny_trained), "--data", str(calls), "--out", str(out),
                             "--workers", "1"], capsys)
        assert time.monotonic() - start < 30
    assert "another salesrl run is writing this output" in message and not out.exists()
    with pytest.raises(OutputBusyError):
        with claim_output(tmp_path / "arrays-dir"):
            with claim_output(tmp_path / "arrays-dir"):
                pass
    score_archive(tiny_trained, calls, out, workers=1)  # free again: runs


def test_two_concurrent_scorers_one_runs_one_is_refused(tiny_trained, calls, tmp_path):
    out = tmp_path / "scores.jsonl"
    exe = Path(sys.executable).with_name("salesrl")
    argv = [str(exe), "score", "--model", str(tiny_trained), "--data", str(calls), "--out", str(out),
            "--workers", "1", "--chunk-conversations", "5"]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    refused = [err for code, err in results if code != 0]
    assert codes == [0, 1] or codes == [0, 0], results  # the second may start after the first finished
    assert all("another salesrl run is writing this output" in err for err in refused)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == sum(c.num_turns for c in read_conversations(calls))  # one run's rows, exactly once


def test_a_rerun_rewrites_the_rejects_and_cleans_leftovers(tiny_trained, calls, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = calls.read_text().splitlines()
    bad.write_text("\n".join(lines + ["{not json"]) + "\n")
    out = tmp_path / "scores.jsonl"
    first = score_archive(tiny_trained, bad, out, workers=1)
    assert first.rejected == 1 and (tmp_path / "scores.rejects.jsonl").read_text().count("\n") == 1
    # A kill after done.json could leave a parts directory and temporaries: the next run removes them.
    (tmp_path / "scores.parts").mkdir()
    (tmp_path / ".scores.jsonl.tmp-99999").write_text("half")
    again = score_archive(tiny_trained, bad, out, workers=1)
    assert again.up_to_date and not (tmp_path / "scores.parts").exists()
    assert not (tmp_path / ".scores.jsonl.tmp-99999").exists()
    # Fixed input, new run: the old reasons are gone.
    bad.write_text(calls.read_text())
    fixed = score_archive(tiny_trained, bad, out, workers=1)
    assert fixed.rejected == 0 and not (tmp_path / "scores.rejects.jsonl").exists()


def test_workers_end_with_their_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, time
        from salesrl_jax.io.resumable_map import resumable_map

        def work(context, index, chunk):
            with open({str(tmp_path)!r} + f"/worker-{{os.getpid()}}", "w"):
                pass
            time.sleep(60)

        if __name__ == "__main__":
            resumable_map(range(4), work, lambda result: None, workers=2)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie awaiting its reaper has exited
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_nothing_valid_to_score_leaves_nothing_behind(tiny_trained, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n{\"id\": \"x\", \"turns\": []}\n")
    with pytest.raises(ValueError, match="no valid conversations to score"):
        score_archive(tiny_trained, bad, tmp_path / "scores.jsonl", workers=1)
    assert not (tmp_path / "scores.parts").exists() and not (tmp_path / "scores.jsonl").exists()
    assert (tmp_path / "scores.rejects.jsonl").read_text().count("\n") == 2  # both reasons kept
