#!/usr/bin/env bash
# Training and scoring throughput on whatever devices JAX sees, in one command meant to end within 5 minutes:
#   scripts/device_bench.sh [OUT_DIR]
# Prints the platform, then `salesrl bench`'s tables: batch scoring float32 vs int8, training throughput of the
# default model, and data-parallel training over the visible devices when there are several. Writes
# OUT_DIR/bench.json (default runs/device_bench) after every part, so a run stopped by the time limit keeps what
# it measured. PYTHON picks the interpreter (default python3; salesrl_jax must be importable by it).
# On an accelerator the batches are larger (an H100/H200 idles at CPU sizes). On a CPU-only machine the mesh part
# gets 8 virtual devices, which measures partitioning overhead, not speed-up (they share the cores).
# Streaming latency is `salesrl bench --parts stream` (deployed on CPU: one turn is launch-bound on a GPU).
set -euo pipefail
out=${1:-runs/device_bench}
py=${PYTHON:-python3}
mkdir -p "$out"
read -r backend devices < <("$py" -c 'import jax; print(jax.default_backend(), jax.device_count())')
if [ "$backend" = cpu ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=8"
  sizes=(1024 16384); rows=2048; parts=(batch train mesh)
else
  sizes=(1024 16384 131072); rows=16384; parts=(batch train)
  if [ "$devices" -gt 1 ]; then parts+=(mesh); fi
fi
"$py" -c 'import jax; print("JAX", jax.__version__, "on", jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
timeout "${DEVICE_BENCH_TIMEOUT:-295}" "$py" -m salesrl_jax.cli bench --parts "${parts[@]}" --train-models default \
  --dims 3072 --batch-sizes "${sizes[@]}" --min-seconds 0.5 --train-rows "$rows" --out "$out/bench.json" \
  | tee "$out/bench.md"
