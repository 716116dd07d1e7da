"""Benchmark helpers: interleaved timing, and the batch benchmark end to end at a tiny size."""

import json
import time

import numpy as np

from salesrl_jax.bench.timing import interleaved_times


def test_interleaved_times_calls_every_variant_once_per_round():
    calls = []

    def slow(x):
        calls.append("slow")
        time.sleep(0.002)
        return np.asarray(x)

    def fast(x):
        calls.append("fast")
        return np.asarray(x)

    first, times = interleaved_times({"slow": (slow, (1,)), "fast": (fast, (2,))}, min_seconds=0.02)
    assert set(first) == set(times) == {"slow", "fast"}
    assert len(times["slow"]) == len(times["fast"]) >= 3
    # After the two first calls, the calls alternate: one of each per round.
    assert calls[2:] == ["slow", "fast"] * len(times["slow"])
    assert np.median(times["slow"]) > np.median(times["fast"])


def test_batch_benchmark_prints_and_records_every_int8_variant(tmp_path, capsys):
    from salesrl_jax.bench.inference import INT8_VARIANTS
    from salesrl_jax.cli import Bench

    out = tmp_path / "bench.json"
    Bench(parts=("batch",), dims=(16,), batch_sizes=(8,), min_seconds=0.01, out=out).run()
    (row,) = json.loads(out.read_text())["batch"]
    for name in INT8_VARIANTS:
        assert row[f"{name}_turns_per_s"] > 0 and row[f"{name}_over_float32"] > 0
    assert row["int8_dot_default"] in ("int32", "bf16")
    assert "| 16 | 8 |" in capsys.readouterr().out
