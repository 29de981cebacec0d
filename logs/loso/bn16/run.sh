#!/usr/bin/env bash
# Addendum 18 of logs/loso/rule.md: single-scan batch-norm adaptation, N = 16, protocol 1.
set -euo pipefail
cd /work/main
echo "== start $(date -u)"
.venv/bin/python -m studies.generalisation /work/k1/base/model.safetensors /work/fw/K1-base-1/model.safetensors /work/gpu3/loso-R.safetensors /work/mx/ER/model.safetensors --bn-prior 16 --threads 2 --data ../shared/data --out /work/mx/bn > /work/mx/bn.console (kept as logs/loso/bn16/console.txt) 2>&1
echo "== done $(date -u)"
