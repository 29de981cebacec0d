#!/usr/bin/env bash
# Baseline stage 10 (logs/baseline-stage10/rule.md): probe, run A, then the readings.
set -uo pipefail
cd /work/main
P=.venv/bin/python
D=../shared/data
CMD=($P -m train --recipe lesion-baseline --init checkpoints/baseline.safetensors --teacher checkpoints/resnet50.safetensors --distill 0.7 --distill-temperature 2 --threads 2 --schedule constant --lr 0.0003 --warmup-epochs 0 --average-from 1 --data $D)
t0=$(date +%s)
"${CMD[@]}" --epochs 1 --out runs/stage10/probe-1 > runs/stage10/probe-1.txt 2>&1 || { echo "probe failed"; exit 1; }
sec=$($P -c "import json; print(json.load(open('runs/stage10/probe-1/history.json'))[-1]['seconds'])")
N=$($P -c "import math; print(min(60, math.floor(4200 / $sec)))")
echo "probe: $sec s an epoch (whole call $(( $(date +%s) - t0 )) s); N = min(60, floor(4200 / $sec)) = $N; $(date -u)" | tee runs/stage10/plan.txt
"${CMD[@]}" --epochs $N --out runs/stage10/A > runs/stage10/A.txt 2>&1; echo "A: exit $? $(date -u)"
M=runs/stage10/A/model.safetensors; O=runs/stage10/A
$P -m train.fit_ood $M --data $D --write > $O/fit_ood.txt 2>&1
$P -m train.fit_familiarity $M --data $D --write --threads 2 > $O/fit_familiarity.txt 2>&1
$P -m studies.lesion_masked $M --data $D --split val --out $O/lesion_masked-val.json > $O/lesion_masked-val.txt 2>&1
$P -m studies.generalisation $M --data $D --out $O/gen > $O/generalisation.txt 2>&1
echo "read $(date -u)"
