"""Two processes on 127.0.0.1 (jax.distributed, gloo between CPU processes) train as one process with the
same two slices per minibatch: identical parameters, also when the pair is stopped and resumed."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.parallel.process_runs", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _results(procs: list[subprocess.Popen]) -> list[dict]:
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        outs.append(json.loads(lines[-1]) if lines else None)
    return outs


def test_two_processes_train_as_one_and_resume(tiny_arrays, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    single = _run(["single", str(tiny_arrays), str(tmp_path / "single")],
                  {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    (reference,) = _results([single])
    # The pair is stopped after two chunks (as a kill would leave it), then started again: it resumes from the
    # checkpoint both processes wrote together.
    pair = tmp_path / "pair"
    for stop in (["2"], []):
        port = str(_free_port())
        found = _results([_run(["pair", str(i), port, str(tiny_arrays), str(pair), *stop], env) for i in (0, 1)])
    assert [f["process"] for f in found] == [0, 1] and all(f["processes"] == 2 for f in found)
    assert reference["processes"] == 1 and reference["devices"] == 2
    assert found[0]["digest"] == found[1]["digest"] == reference["digest"]
    assert found[0]["valid"] == reference["valid"]
    saved = json.loads((pair / "config.json").read_text())["parallel"]
    assert saved["num_processes"] == 2 and saved["process_id"] == -1 and saved["devices"] == 2
    log = [json.loads(line) for line in (pair / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "done"  # process 0 wrote the log, continued across the restart
    assert not list(pair.glob("*.process*"))
    # The pair's best model loads in one process (before session 28 orbax refused its two-process topology), and both
    # processes recalibrated it together, to the single process's map.
    from salesrl_jax.run.trained_model import TrainedModel

    best = [TrainedModel.load(run / "checkpoints" / "best") for run in (pair, tmp_path / "single")]
    assert best[0].params_digest == best[1].params_digest
    served = [TrainedModel.load(run) for run in (pair, tmp_path / "single")]
    assert [m.directory.name for m in served] == ["calibrated", "calibrated"]
    assert served[0].meta["recalibration"]["slope"] == pytest.approx(served[1].meta["recalibration"]["slope"],
                                                                      rel=1e-5)


def test_the_library_places_arrays_on_this_process_devices():
    """In a multi-process run ``jax.devices()[0]`` is process 0's device, which no other process can address: a
    carry put there made every other process's block-wise validation fail (found in session 28 with
    `salesrl train --parallel.distributed` on n-gram arrays). Placement reads ``jax.local_devices()``."""
    import re

    root = Path(__file__).resolve().parents[2] / "salesrl_jax"
    offenders = [f"{path.relative_to(root.parent)}:{n}" for path in root.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"jax\.devices\(\)\[\d+\](?!\.platform)", line)]  # its platform is everyone's
    assert not offenders, offenders
