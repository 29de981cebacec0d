#!/usr/bin/env bash
# Baseline stage 11 (logs/baseline-stage11/rule.md): probe, run LS, then the readings.
# Stage 12 runs the same steps with its own flags and budget (logs/baseline-stage12/run.sh):
# STAGE, NAME, BUDGET and FLAGS default to stage 11's.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
P=${PYTHON:-.venv/bin/python}
D=${BRAINMRI_DATA:-../shared/data}
NAME=${NAME:-LS}; BUDGET=${BUDGET:-3600}; FLAGS=${FLAGS:---look-swap 0.5 --consistency 1.0}
R=runs/${STAGE:-stage11}
mkdir -p $R
CMD=($P -m train --recipe lesion-baseline --init checkpoints/baseline.safetensors --teacher checkpoints/resnet50.safetensors --distill 0.7 --distill-temperature 2 --threads 2 --schedule constant --lr 0.0003 --warmup-epochs 0 --average-from 1 $FLAGS --data $D)
t0=$(date +%s)
"${CMD[@]}" --epochs 1 --out $R/probe-1 > $R/probe-1.txt 2>&1 || { echo "probe failed"; exit 1; }
sec=$($P -c "import json; print(json.load(open('$R/probe-1/history.json'))[-1]['seconds'])")
N=$($P -c "import math; print(min(30, math.floor($BUDGET / $sec)))")
echo "probe: $sec s an epoch (whole call $(( $(date +%s) - t0 )) s); N = min(30, floor($BUDGET / $sec)) = $N; $(date -u)" | tee $R/plan.txt
"${CMD[@]}" --epochs $N --out $R/$NAME > $R/$NAME.txt 2>&1; echo "$NAME: exit $? $(date -u)"
M=$R/$NAME/model.safetensors; O=$R/$NAME
$P -m train.fit_ood $M --data $D --write > $O/fit_ood.txt 2>&1
$P -m train.fit_familiarity $M --data $D --write --threads 2 > $O/fit_familiarity.txt 2>&1
$P -m studies.lesion_masked $M --data $D --split val --out $O/lesion_masked-val.json > $O/lesion_masked-val.txt 2>&1
$P -m studies.generalisation $M --data $D --out $O/gen > $O/generalisation.txt 2>&1
echo "read $(date -u)"
