#!/usr/bin/env bash
# Rule v19 of logs/confident/rule.md: RI-s0 (v15's first member: R1's command with --implant 1,
# seed 0, split seed 0) on the CPU through scripts/gpu_train.sh's PLAN=members (python -m train
# resumes from the run folder's last_state.pt when started again), then its familiarity fit and the ensemble with v16's
# E4I-s0, E4I-s1 (in $IMP, /work/imp). Runs in $RUNS/loso-RI-s0 (/work/v11).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${RUNS:-/work/v11}; imp=${IMP:-/work/imp}; py=${PYTHON:-.venv/bin/python}
RUNS=$runs PLAN=members MEMBER_NAME=loso-RI MEMBER_SEEDS=0 PYTHON=$py \
  EXTRA="--loader-workers 0 --implant 1" bash scripts/gpu_train.sh "$runs/out"
"$py" -m train.fit_familiarity "$runs/loso-RI-s0/model.safetensors" --data ../shared/data \
  --write --threads 2 > "$runs/loso-RI-s0/fit_familiarity.txt" 2>&1
echo "== scoring $(date -u)"
"$py" -m studies.generalisation "$runs/loso-RI-s0/model.safetensors" "$imp"/E4I-s{0,1}/model.safetensors \
  --ensemble --data ../shared/data --out "$runs/gen" --threads 2 > "$runs/gen19.console" 2>&1
echo "== done $(date -u)"
