#!/usr/bin/env bash
# Rule v20 of logs/confident/rule.md: R1-s0 checked by RI-s0 (v19's member), then by E4I-s0 and
# E4I-s1 as well, scored by studies.generalisation --ensemble in that order (sizes 2, 3, 4).
# The members live in $RUNS (/work/v11) and $IMP (/work/imp); the JSON goes to $RUNS/gen20.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${RUNS:-/work/v11}; imp=${IMP:-/work/imp}; py=${PYTHON:-.venv/bin/python}
"$py" -m studies.generalisation "$runs/loso-R1-s0/model.safetensors" "$runs/loso-RI-s0/model.safetensors" \
  "$imp"/E4I-s{0,1}/model.safetensors --ensemble --data ../shared/data --out "$runs/gen20" --threads 2
