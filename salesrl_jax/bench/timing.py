"""Timing helpers: compile time apart from steady state; ratios measured in one run."""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np


def compile_and_time(fn: Callable, *args, min_seconds: float = 1.0, max_calls: int = 10_000) -> tuple[float, np.ndarray]:
    """``(first-call seconds, steady-state per-call seconds [calls])``: the first call compiles."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    deadline = time.perf_counter() + min_seconds
    while (time.perf_counter() < deadline or len(times) < 3) and len(times) < max_calls:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, np.asarray(times)


def matmul_peak_flops(n: int = 2048, dtype=np.float32) -> float:
    """Achieved FLOP/s of one large jitted matmul (the machine's practical peak for dense float work)."""
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), dtype)
    b = jnp.asarray(np.random.default_rng(1).normal(size=(n, n)), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    _, times = compile_and_time(matmul, a, b, min_seconds=2.0)
    return 2.0 * n ** 3 / float(np.median(times))


def program_flops(jitted, *args) -> float | None:
    """FLOPs XLA counts for one call of ``jitted(*args)`` (None if the backend does not say)."""
    try:
        analysis = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - cost analysis is best-effort and backend-dependent
        return None
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    flops = analysis.get("flops") if analysis else None
    return float(flops) if flops else None


def interleaved_times(variants: dict[str, tuple[Callable, tuple]], min_seconds: float = 1.0,
                      max_rounds: int = 10_000) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """``(first-call seconds, steady-state per-call seconds)`` of each named ``(fn, args)``, timed in rounds
    that call every variant once, so that a machine slowing down or speeding up mid-run moves every
    variant alike and their ratios stay meaningful (timing one variant after another does not).
    ``min_seconds`` is the total per variant."""
    first = {}
    for name, (fn, args) in variants.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first[name] = time.perf_counter() - start
    times = {name: [] for name in variants}
    deadline = time.perf_counter() + min_seconds * len(variants)
    rounds = 0
    while (time.perf_counter() < deadline or rounds < 3) and rounds < max_rounds:
        for name, (fn, args) in variants.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
        rounds += 1
    return first, {name: np.asarray(t) for name, t in times.items()}
