#!/usr/bin/env bash
# GPU checks and figures (docs/gpu.md), on a machine with a CUDA GPU:
#     scripts/gpu_check.sh OUT VAL_SCANS BENCH_SCANS
# OUT: folder for the results; VAL_SCANS: validation scans; BENCH_SCANS: the benchmark's scans.
# STEPS picks steps (default: all, in this order): gpu tests precision bench stages.
# Each step has its own time limit, and a failing step does not stop the next.
# The exit status is 1 when any step failed.
set -uo pipefail
out=$(realpath -m "${1:?OUT}"); val=$(realpath -m "${2:?VAL_SCANS}"); bench=$(realpath -m "${3:?BENCH_SCANS}")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
failed=0
step() { local name=$1 limit=$2 status; shift 2
  [[ " ${STEPS:-gpu tests precision bench stages} " == *" $name "* ]] || return 0
  echo "== $name ($(date -u +%H:%M:%S))"; timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  status=${PIPESTATUS[0]}; echo "== $name: exit $status"; [[ $status == 0 ]] || failed=1; }
step gpu 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step tests 300 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_train.py tests/test_dilate.py
step precision 120 "$py" -m benchmarks.precision --images "$val" --count 160 --device cuda \
    --out "$out/precision.json"
step bench 120 "$py" -m benchmarks --devices cuda --images "$bench" --count 32 --repeats 20 \
    --out "$out/benchmarks-cuda.md"
step stages 60 "$py" -m benchmarks.stages --device cuda --images "$bench" --count 16 --repeats 20
exit $failed
