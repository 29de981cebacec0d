#!/usr/bin/env bash
# Rule v15 of logs/confident/rule.md on the CPU ("v15 on the CPU"): members RI-s1, RI-s2 (R1's
# command with --implant 1; RI-s0 is v19's), resumable, through scripts/gpu_train.sh's
# PLAN=members, then each one's familiarity fit; once all three are in $RUNS, the ensemble.
#     logs/confident/members15-cpu.sh 1      # then 2; runs in $RUNS/loso-RI-sSEED (/work/v11)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${RUNS:-/work/v11}; py=${PYTHON:-.venv/bin/python}
RUNS=$runs PLAN=members MEMBER_NAME=loso-RI MEMBER_SEEDS="${*:?SEED...}" PYTHON=$py \
  EXTRA="--loader-workers 0 --implant 1" bash scripts/gpu_train.sh "$runs/out"
for seed in "$@"; do
  "$py" -m train.fit_familiarity "$runs/loso-RI-s$seed/model.safetensors" --data ../shared/data \
    --write --threads 2 > "$runs/loso-RI-s$seed/fit_familiarity.txt" 2>&1
done
if [ -f "$runs/loso-RI-s1/model.safetensors" ] && [ -f "$runs/loso-RI-s2/model.safetensors" ]; then
  echo "== scoring $(date -u)"
  "$py" -m studies.generalisation "$runs"/loso-RI-s{0,1,2}/model.safetensors --ensemble \
    --data ../shared/data --out "$runs/gen15" --threads 2 > "$runs/gen15.console" 2>&1
fi
echo "== done $(date -u)"
