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


def test_suite_tables_format_every_part():
    from salesrl_jax.bench.suite import loop_lines, mesh_table, stream_table, train_table

    assert "| streaming | 0.220 | 0.400 | 4,545 |" in stream_table(
        [{"case": "streaming", "p50_ms": 0.22, "p99_ms": 0.4, "turns_per_s": 4545.4}])
    assert "(22.0x)" in loop_lines({"batch": 1024, "dim": 3072, "loop_turns_per_s": 1000.0,
                                    "batch_float32_turns_per_s": 22000.0, "float32_speedup": 22.0,
                                    "batch_int8_turns_per_s": 29000.0, "int8_speedup": 29.0})
    row = {"dim": 512, "model": "default", "rows": 2048, "parameters": 1000, "pretrain_turns_per_s": 5.0, "pretrain_compile_s": 1.0,
           "ppo_env_steps_per_s": 2.0, "ppo_compile_s": 2.0, "pretrain_gflops_per_s": 3.0,
           "pretrain_fraction_of_peak": 0.5}
    table = train_table([row], 100.0)
    assert "| 512 | default | 1,000 | 5 | 3.0 (50%) |" in table and "nan" in table  # a missing figure shows as nan
    assert "2,048 rows per packed minibatch" in table
    mesh = mesh_table([{"devices": d, "params": "replicated", "platform": "cpu", "dim": 3072, "model": "default",
                        "rows": 2048, "pretrain_turns_per_s": 100.0 * d, "pretrain_over_one_device": float(d),
                        "pretrain_compile_s": 1.0, "ppo_env_steps_per_s": 10.0, "ppo_over_one_device": 1.0,
                        "ppo_compile_s": 2.0} for d in (1, 2)])
    assert "| 2 | replicated | 200 | 2.00x | 1.0 | 10 | 1.00x | 2.0 |" in mesh and "on cpu" in mesh


def test_guidance_part_measures_the_environment_and_ppo():
    from salesrl_jax.bench.guidance import guidance_throughput
    from salesrl_jax.bench.suite import guidance_table

    rows = guidance_throughput(num_envs=(64,), ppo_steps=8192, seed_groups=((0,),), stream_turns=40)
    assert [r["what"] for r in rows] == ["environment, random actions", "environment, scripted actions",
                                         "PPO end to end, 1 seed(s) vmapped",
                                         "PPO end to end, 1 seed, view model (128-d encoder state)",
                                         "streaming Scorer, 512-d cached, p50 ms without / with guidance"]
    assert all(r["env_steps_per_s"] > 0 for r in rows[:-1]) and rows[-2]["first_call_s"] > 0
    assert rows[-1]["p50_ms_with"] > 0 and rows[-1]["p50_ms_without"] > 0
    table = guidance_table(rows)
    assert "| environment, scripted actions | 64 |" in table and table.count("\n") == len(rows) + 2
    assert "with a guidance policy" in table


def test_archive_part_scores_a_raw_archive_end_to_end(tmp_path, monkeypatch):
    # The benchmark's run directory is a model every command loads, with its confidence fit, and the part times
    # `salesrl score` with the confidence columns and without.
    from salesrl_jax.bench import archive
    from salesrl_jax.run.trained_model import TrainedModel

    run = archive.export_bench_run(tmp_path / "run", 16, tmp_path / "no-arrays")
    model = TrainedModel.load(run)
    assert model.identity.dim == 16 and model.confidence is not None
    monkeypatch.setattr(archive, "CALIBRATION_CONVERSATIONS", 60)  # the int8 scales' calibration arrays
    r = archive.archive_throughput(40, dim=16, rounds=1, workers=1)
    assert r["conversations"] == 40 and r["turns"] > 40 and r["quantized"]
    assert r["confidence_turns_per_s"] > 0 and r["plain_turns_per_s"] > 0
    assert len(r["seconds"]["confidence"]) == len(r["seconds"]["plain"]) == r["rounds"] == 1


def test_archive_part_is_wired_to_the_command(tmp_path, capsys, monkeypatch):
    from salesrl_jax.bench import archive
    from salesrl_jax.cli import Bench

    asked = {}

    def measured(conversations, dim):
        asked.update(conversations=conversations, dim=dim)
        return {"conversations": conversations, "turns": 10 * conversations, "dim": dim, "quantized": True,
                "rounds": 2, "confidence_turns_per_s": 12000.0, "plain_turns_per_s": 15000.0,
                "confidence_over_plain": 0.8}

    monkeypatch.setattr(archive, "archive_throughput", measured)
    out = tmp_path / "bench.json"
    Bench(parts=("archive",), dims=(3072, 512), archive_conversations=123, out=out).run()
    assert asked == {"conversations": 123, "dim": 512}
    assert json.loads(out.read_text())["archive"]["confidence_turns_per_s"] == 12000.0
    assert "12,000 turns/s with confidence, 15,000 without (0.80x)" in capsys.readouterr().out
