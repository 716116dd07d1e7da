#!/usr/bin/env bash
# A study (`salesrl study`) on a lent machine, within its time limit, keeping what it finished:
#   scripts/device_study.sh STUDY_FILE WORKDIR OUT_DIR [SECONDS]
# Runs the study for at most SECONDS (default 480; it is resumable: run the same command again to continue in
# the same WORKDIR), then packs the small files a table is made from into OUT_DIR/study-results.tgz: each run's
# config.json, result.json and metrics.jsonl, each evaluation's metrics.json, the baselines' and the table.
# Unpacked into the same WORKDIR on another machine, `salesrl study STUDY_FILE --workdir WORKDIR` there
# regenerates the (seeded) data, reuses every finished run and evaluation, and trains only what is missing.
# PYTHON picks the interpreter (default python3; salesrl_jax must be importable by it).
set -uo pipefail
study=$1; work=$2; seconds=${4:-480}
out=$(mkdir -p "$3" && cd "$3" && pwd)
py=${PYTHON:-python3}
mkdir -p "$work"
"$py" -c 'import jax; print("JAX", jax.__version__, "on", jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
nproc
start=$(date +%s)
PYTHONUNBUFFERED=1 timeout "$seconds" "$py" -m salesrl_jax.cli study "$study" --workdir "$work" 2>&1 \
  | tee "$out/study.log"
echo "study exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" | tee -a "$out/study.log"
(cd "$work" && find . \( -name config.json -o -name result.json -o -name metrics.jsonl -o -name 'metrics.json' \
  -o -name 'table.*' -o -name study.json -o -name choice.json \) -not -path './data/*' -print0 \
  | tar czf "$out/study-results.tgz" --null -T - ) 2>/dev/null || true
