#!/usr/bin/env bash
# GPU checks and figures (docs/gpu.md), on a machine with a CUDA GPU:
#     scripts/gpu_check.sh OUT VAL_SCANS BENCH_SCANS
# OUT: folder for the results; VAL_SCANS: validation scans; BENCH_SCANS: the benchmark's scans.
# Each step has its own time limit, and a failing step does not stop the next.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?OUT}; val=${2:?VAL_SCANS}; bench=${3:?BENCH_SCANS}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
step() { local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%H:%M:%S))"; timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"; }
step gpu 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step tests 120 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_train.py
step precision 120 "$py" -m benchmarks.precision --images "$val" --count 160 --device cuda \
    --out "$out/precision.json"
for precision in bf16 fp32; do
  step "bench-$precision" 120 "$py" -m benchmarks --devices cuda --precision "$precision" \
      --images "$bench" --count 32 --repeats 20 --out "$out/benchmarks-cuda-$precision.md"
done
