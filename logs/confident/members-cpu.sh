#!/usr/bin/env bash
# Rule v11 of logs/confident/rule.md on the CPU: members of R1's command, resumable, through
# scripts/gpu_train.sh's PLAN=members (one place for the command: the same flags, pack and
# 8-bit-rounded ImageNet start as R1), loading in-process; then each member's familiarity fit.
#     logs/confident/members-cpu.sh 0 1 2      # seeds; runs in $RUNS/loso-R1-sSEED (/work/v11)
# Seed 0 is R1's own command. Scoring, once the three are trained (one session's machine):
#   .venv/bin/python -m studies.generalisation /work/v11/loso-R1-s{0,1,2}/model.safetensors \
#     --ensemble --data ../shared/data --out /work/v11/gen --threads 2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${RUNS:-/work/v11}; py=${PYTHON:-.venv/bin/python}
RUNS=$runs PLAN=members MEMBER_SEEDS="${*:?SEED...}" PYTHON=$py EXTRA="--loader-workers 0" \
  bash scripts/gpu_train.sh "$runs/out"
for seed in "$@"; do
  "$py" -m train.fit_familiarity "$runs/loso-R1-s$seed/model.safetensors" --data ../shared/data \
    --write --threads 2 > "$runs/loso-R1-s$seed/fit_familiarity.txt" 2>&1
done
