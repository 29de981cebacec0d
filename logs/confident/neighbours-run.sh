#!/usr/bin/env bash
# Rule v9 of logs/confident/rule.md: support among the nearest training scans, R1 and K1-base.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
echo "== K1-base $(date -u)"
$PY -m studies.neighbours /work/k1/base/model.safetensors --name loso-K1-base --data ../shared/data --out /work/nb/out --threads 2
echo "== R1 $(date -u)"
$PY -m studies.neighbours /work/gpu3/loso-R.safetensors --name loso-R1 --data ../shared/data --out /work/nb/out --threads 2
echo "== done $(date -u)"
