#!/usr/bin/env bash
# Baseline stage 9 (logs/baseline-stage9/rule.md): the interpolations, then the readings (stopped
# after the interpolations). It ran before the flag existed, when recomputing on clean scans was
# what train.interpolate did; --bn-statistics clean is that behaviour now.
set -uo pipefail
cd /work/main
P=.venv/bin/python
D=../shared/data
S5=checkpoints/baseline.safetensors
mk() { mkdir -p runs/stage9/$1; $P -m train.interpolate $S5 $2 --alpha $3 --bn-statistics clean --data $D --out runs/stage9/$1.safetensors > runs/stage9/$1/interpolate.txt 2>&1; echo "$1 made $(date -u)"; }
read_() {
  M=runs/stage9/$1.safetensors; O=runs/stage9/$1
  $P -m train.fit_ood $M --data $D --write > $O/fit_ood.txt 2>&1
  $P -m train.fit_familiarity $M --data $D --write --threads 2 > $O/fit_familiarity.txt 2>&1
  $P -m studies.lesion_masked $M --data $D --split val --out $O/lesion_masked-val.json > $O/lesion_masked-val.txt 2>&1
  $P -m studies.generalisation $M --data $D --out $O/gen > $O/generalisation.txt 2>&1
  echo "$1 read $(date -u)"
}
mk W-bn runs/stage6/baseline-L.safetensors 0.5
mk W-cf-bn runs/stage6/baseline-L-cf.safetensors 0.5
mk S-bn $S5 0.0
read_ W-bn
read_ W-cf-bn
echo "done $(date -u)"
