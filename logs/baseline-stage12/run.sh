#!/usr/bin/env bash
# Baseline stage 12 (logs/baseline-stage12/rule.md): probe, run CF, then the readings.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
P=.venv/bin/python
D=${BRAINMRI_DATA:-../shared/data}
R=runs/stage12
mkdir -p $R
CMD=($P -m train --recipe lesion-baseline --init checkpoints/baseline.safetensors --teacher checkpoints/resnet50.safetensors --distill 0.7 --distill-temperature 2 --threads 2 --schedule constant --lr 0.0003 --warmup-epochs 0 --average-from 1 --counterfactual 0.5 --data $D)
t0=$(date +%s)
"${CMD[@]}" --epochs 1 --out $R/probe-1 > $R/probe-1.txt 2>&1 || { echo "probe failed"; exit 1; }
sec=$($P -c "import json; print(json.load(open('$R/probe-1/history.json'))[-1]['seconds'])")
N=$($P -c "import math; print(min(30, math.floor(2100 / $sec)))")
echo "probe: $sec s an epoch (whole call $(( $(date +%s) - t0 )) s); N = min(30, floor(2100 / $sec)) = $N; $(date -u)" | tee $R/plan.txt
"${CMD[@]}" --epochs $N --out $R/CF > $R/CF.txt 2>&1; echo "CF: exit $? $(date -u)"
M=$R/CF/model.safetensors; O=$R/CF
$P -m train.fit_ood $M --data $D --write > $O/fit_ood.txt 2>&1
$P -m train.fit_familiarity $M --data $D --write --threads 2 > $O/fit_familiarity.txt 2>&1
$P -m studies.lesion_masked $M --data $D --split val --out $O/lesion_masked-val.json > $O/lesion_masked-val.txt 2>&1
$P -m studies.generalisation $M --data $D --out $O/gen > $O/generalisation.txt 2>&1
echo "read $(date -u)"
