#!/usr/bin/env bash
# Baseline stage 9, addendum 1 (logs/baseline-stage9/rule.md): statistics from training batches.
set -uo pipefail
cd /work/main
P=.venv/bin/python
D=../shared/data
S5=checkpoints/baseline.safetensors
mk() { mkdir -p runs/stage9/$1; $P -m train.interpolate $S5 $2 --alpha $3 --bn-statistics training --data $D --out runs/stage9/$1.safetensors > runs/stage9/$1/interpolate.txt 2>&1; echo "$1 made $(date -u)"; tail -n 1 runs/stage9/$1/interpolate.txt; }
mk W-aug runs/stage6/baseline-L.safetensors 0.5
mk W-cf-aug runs/stage6/baseline-L-cf.safetensors 0.5
mk S-aug $S5 0.0
echo "made $(date -u)"
