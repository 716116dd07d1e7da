"""`salesrl bench` as a function: every benchmark in one process, each printed as a Markdown table as it
finishes (ratios measured side by side in the same run), and all numbers returned and saved as JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal, Sequence

BenchPart = Literal["batch", "stream", "confidence", "loop", "train", "mesh", "guidance", "incumbent", "archive"]
PARTS: tuple[BenchPart, ...] = ("batch", "stream", "confidence", "loop", "train")  # the others: by name


def batch_table(rows: list[dict]) -> str:
    from salesrl_jax.bench.inference import INT8_VARIANTS

    lines = ["batch scoring over cached arrays (turns/s; weights random, shapes of the default model; int8 with "
             "calibrated activation scales, its products summed in int32 or on bf16 dot units; int8 embeddings: "
             f"the default way, {rows[0]['int8_dot_default']}, fed int8 embeddings)",
             "| dim | batch | float32 | int8, int32 sums | ratio | int8, bf16 units | ratio | int8, int8 embeddings "
             "| ratio |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = " | ".join(f"{r[f'{name}_turns_per_s']:,.0f} | {r[f'{name}_over_float32']:.2f}x"
                           for name in INT8_VARIANTS)
        lines.append(f"| {r['dim']} | {r['batch']:,} | {r['float32_turns_per_s']:,.0f} | {cells} |")
    return "\n".join(lines)


def stream_table(rows: list[dict]) -> str:
    lines = ["streaming scorer, one turn per call", "| case | p50 ms | p99 ms | turns/s |", "|---|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['turns_per_s']:,.0f} |" for r in rows]
    return "\n".join(lines)


def loop_lines(r: dict) -> str:
    return (f"per-turn Python loop (the incumbent's way) vs batch {r['batch']}, {r['dim']}-d, same model:\n"
            f"  loop {r['loop_turns_per_s']:,.0f} turns/s; batch float32 {r['batch_float32_turns_per_s']:,.0f} "
            f"({r['float32_speedup']:.1f}x); batch int8 {r['batch_int8_turns_per_s']:,.0f} ({r['int8_speedup']:.1f}x)")


def train_table(rows: list[dict], peak_gflops: float) -> str:
    nan = float("nan")
    lines = [f"training throughput ({rows[0]['rows']:,} rows per packed minibatch; measured matmul peak "
             f"{peak_gflops:,.1f} GFLOP/s, 2048^3 float32)",
             "| dim | model | params | pretrain turns/s | GFLOP/s (% peak) | compile s | PPO env steps/s | "
             "GFLOP/s (% peak) | compile s |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pre = f"{r.get('pretrain_gflops_per_s', nan):.1f} ({r.get('pretrain_fraction_of_peak', nan):.0%})"
        ppo = f"{r.get('ppo_gflops_per_s', nan):.1f} ({r.get('ppo_fraction_of_peak', nan):.0%})"
        lines.append(f"| {r['dim']} | {r['model']} | {r['parameters']:,} | {r['pretrain_turns_per_s']:,.0f} | {pre} | "
                     f"{r['pretrain_compile_s']:.1f} | {r['ppo_env_steps_per_s']:,.0f} | {ppo} | "
                     f"{r['ppo_compile_s']:.1f} |")
    return "\n".join(lines)


def mesh_table(rows: list[dict]) -> str:
    r0 = rows[0]
    lines = [f"data-parallel training on {r0['platform']} ({r0['model']} model, {r0['dim']}-d, {r0['rows']} rows per "
             "minibatch, one slice per device)",
             "| devices | parameters | pretrain turns/s | vs 1 | compile s | PPO env steps/s | vs 1 | compile s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['devices']} | {r['params']} | {r['pretrain_turns_per_s']:,.0f} | {r['pretrain_over_one_device']:.2f}x "
              f"| {r['pretrain_compile_s']:.1f} | {r['ppo_env_steps_per_s']:,.0f} | {r['ppo_over_one_device']:.2f}x | "
              f"{r['ppo_compile_s']:.1f} |" for r in rows]
    return "\n".join(lines)


def guidance_table(rows: list[dict]) -> str:
    lines = ["guidance: the simulator environment (finished conversations replaced every step) and PPO in it",
             "| what | conversations | env steps/s | first call s |", "|---|---:|---:|---:|"]
    lines += [f"| {r['what']} | {r['num_envs']:,} | {r['env_steps_per_s']:,.0f} | "
              f"{r['first_call_s']:.1f} |" if "first_call_s" in r else
              f"| {r['what']} | {r['num_envs']:,} | {r['env_steps_per_s']:,.0f} | - |" for r in rows
              if "p50_ms_with" not in r]
    lines += [f"streaming Scorer with a guidance policy (512-d, embedding cached): p50 {r['p50_ms_with']:.3f} ms "
              f"against {r['p50_ms_without']:.3f} ms without ({r['with_over_without']:.2f}x, same run)"
              for r in rows if "p50_ms_with" in r]
    return "\n".join(lines)


def incumbent_tables(r: dict) -> str:
    """The incumbent's stack against ours (`salesrl_jax.bench.incumbent.incumbent_comparison`), three tables."""
    shape, ppo, stream, batch = r["shape"], r["ppo"], r["stream"], r["batch"]
    work, ours = ppo["sb3_work"], ppo["our_work"]
    lines = [f"the incumbent's stack (torch {r['torch_version']}, {r['torch_threads']} threads, Stable-Baselines3 "
             f"{r['stable_baselines3_version']}; {shape['embedding_dim'] + shape['feature_dim']}-float observation, "
             f"extractor {'-'.join(map(str, shape['extractor']))}, heads {'-'.join(map(str, shape['heads']))}) "
             "against ours, same run, alternated rounds",
             f"PPO env steps/s (SB3's work: {work['n_steps']}-step rollouts, {work['n_epochs']} epochs of "
             f"{work['batch_size']}; ours: {ours['epochs']} epochs x {ours['minibatches']} minibatches of "
             f"{ours['rows_per_minibatch']:,})", "| stack | work | env steps/s | vs incumbent |", "|---|---|---:|---:|",
             f"| incumbent (SB3 PPO.learn) | SB3 defaults | {ppo['env_steps_per_s']['incumbent']:,.0f} | 1.00x |"]
    for name, ratio in ppo["over_incumbent"].items():
        model = name.removesuffix("_our_work").removesuffix("_sb3_work")
        lines.append(f"| ours, {model} | {'SB3' if name.endswith('sb3_work') else 'our'} defaults | "
                     f"{ppo['env_steps_per_s'][name]:,.0f} | {ratio:.2f}x |")
    lines += ["", "streaming, one turn per call, history carried (embedding cached)",
              "| scorer | p50 ms | p99 ms | turns/s | p50 vs incumbent's predict |", "|---|---:|---:|---:|---:|"]
    for name, p50 in stream["p50_ms"].items():
        ratio = stream["p50_ms"]["incumbent_predict"] / p50
        lines.append(f"| {name} | {p50:.3f} | {stream['p99_ms'][name]:.3f} | {stream['turns_per_s'][name]:,.0f} | "
                     f"{ratio:.2f}x |")
    lines += ["", f"batch {batch['batch']:,} (multiply-adds per turn: " + ", ".join(
        f"{k} {v:,}" for k, v in batch["macs_per_turn"].items() if v) + ")",
              "| scorer | turns/s | vs incumbent |", "|---|---:|---:|",
              f"| incumbent (SB3 predict) | {batch['turns_per_s']['incumbent']:,.0f} | 1.00x |"]
    lines += [f"| {name} | {batch['turns_per_s'][name]:,.0f} | {ratio:.2f}x |"
              for name, ratio in batch["over_incumbent"].items()]
    return "\n".join(lines)


def run_suite(parts: Sequence[BenchPart] = PARTS, dims: Sequence[int] = (512, 3072),
              batch_sizes: Sequence[int] = (1, 32, 1024, 16384), min_seconds: float = 1.0,
              out: str | os.PathLike[str] | None = None, emit: Callable[[str], object] = print,
              train_rows: int | None = None, train_models: Sequence[str] = ("default", "incumbent-sized"),
              archive_conversations: int = 20_000) -> dict:
    """Run the chosen benchmarks; ``emit`` each table as it is measured; save every number to ``out`` (JSON)."""
    import jax

    from salesrl_jax.bench import inference, training
    from salesrl_jax.bench.timing import matmul_peak_flops
    from salesrl_jax.io.atomic import write_json_atomic

    results: dict = {"jax_devices": [str(d) for d in jax.devices()], "jax_version": jax.__version__}
    if "incumbent" in parts:  # before the other parts run, not after them
        from salesrl_jax.bench.incumbent import require_incumbent_extra

        require_incumbent_extra()

    def save() -> None:  # after every part, so a run stopped by a time limit keeps what it measured
        if out is not None:
            write_json_atomic(Path(out), results)

    if "batch" in parts:
        results["batch"] = inference.batch_throughput(dims, batch_sizes, min_seconds)
        emit(batch_table(results["batch"]))
        save()
    if "stream" in parts:
        results["stream"] = inference.streaming_latency()
        emit("\n" + stream_table(results["stream"]))
        save()
    if "confidence" in parts:
        results["confidence"] = r = inference.confidence_overhead(max(dims))
        emit(f"\nconfidence module, batch {r['batch']}, {r['dim']}-d: {r['plain_turns_per_s']:,.0f} turns/s without, "
             f"{r['confidence_turns_per_s']:,.0f} with ({r['confidence_over_plain']:.2f}x; signals in the jitted pass "
             f"{r['signals_only_turns_per_s']:,.0f}, plus the host-side combination)")
        save()
    if "loop" in parts:
        results["loop"] = inference.loop_baseline(max(dims))
        emit("\n" + loop_lines(results["loop"]))
        save()
    if "train" in parts:
        peak = matmul_peak_flops()
        results["matmul_peak_gflops"] = peak / 1e9
        results["train"] = training.training_throughput(dims, train_models, peak_flops=peak,
                                                        min_seconds=max(min_seconds, 2.0), rows=train_rows)
        emit("\n" + train_table(results["train"], peak / 1e9))
        save()
    if "mesh" in parts:
        results["mesh"] = training.mesh_throughput(max(dims), min_seconds=max(min_seconds, 2.0), rows=train_rows)
        emit("\n" + mesh_table(results["mesh"]))
        save()
    if "guidance" in parts:
        from salesrl_jax.bench.guidance import guidance_throughput

        results["guidance"] = guidance_throughput()
        emit("\n" + guidance_table(results["guidance"]))
        save()
    if "incumbent" in parts:
        from salesrl_jax.bench.incumbent import IncumbentShape, incumbent_comparison

        results["incumbent"] = incumbent_comparison(IncumbentShape(embedding_dim=max(dims)), min_seconds)
        emit("\n" + incumbent_tables(results["incumbent"]))
        save()
    if "archive" in parts:
        from salesrl_jax.bench.archive import archive_throughput

        results["archive"] = r = archive_throughput(archive_conversations, dim=min(dims))
        emit(f"\nsalesrl score end to end, {r['conversations']:,} simulator conversations ({r['turns']:,} turns) of raw "
             f"JSONL, {r['dim']}-d, {'int8' if r['quantized'] else 'float32'}, fastest of {r['rounds']} rounds: "
             f"{r['confidence_turns_per_s']:,.0f} turns/s with confidence, {r['plain_turns_per_s']:,.0f} without "
             f"({r['confidence_over_plain']:.2f}x)")
        save()
    if out is not None:
        save()
        emit(f"\nall numbers: {out}")
    return results
