#!/usr/bin/env bash
# Addendum 12 of logs/loso/rule.md on the CPU: R1-32, R1's command at the shipped recipe's 32
# epochs (seed 0, split seed 0), through scripts/gpu_train.sh's PLAN=members (python -m train
# resumes from the run folder's last_state.pt when started again), then its familiarity fit and
# its held-out figures. Runs in $RUNS/loso-R1-32-s0 (/work/v11).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${RUNS:-/work/v11}; py=${PYTHON:-.venv/bin/python}; run=$runs/loso-R1-32-s0
RUNS=$runs PLAN=members MEMBER_NAME=loso-R1-32 MEMBER_SEEDS=0 LOSO_EPOCHS=32 PYTHON=$py \
  EXTRA="--loader-workers 0" bash scripts/gpu_train.sh "$runs/out"
"$py" -m train.fit_familiarity "$run/model.safetensors" --data ../shared/data \
  --write --threads 2 > "$run/fit_familiarity.txt" 2>&1
echo "== scoring $(date -u)"
"$py" -m studies.generalisation "$run/model.safetensors" --data ../shared/data \
  --out "$runs/gen12" --threads 2 > "$runs/gen12.console" 2>&1
echo "== done $(date -u)"
