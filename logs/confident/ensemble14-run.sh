#!/usr/bin/env bash
# Rule v14 of logs/confident/rule.md: EI-2 (ER's command + implants, seed 2, split seed 0), then
# the ensemble of EI-0, EI-1 (addendum 20 of logs/loso/rule.md, logs/loso/IP-0/run.sh) and EI-2.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
OUT=${OUT:-/work/imp}
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2 --split-seed 0"
e="--recipe best --size 160 --epochs 2 --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 $P1"
echo "== EI-2 $(date -u)"
$PY -m train $e --implant 1 --seed 2 --name loso-EI-2 --out $OUT/EI-2 > $OUT/EI-2.console 2>&1
$PY -m train.fit_familiarity $OUT/EI-2/model.safetensors --data ../shared/data --write --threads 2 > $OUT/EI-2/fit_familiarity.txt 2>&1
echo "== scoring $(date -u)"
$PY -m studies.generalisation $OUT/EI-0/model.safetensors $OUT/EI-1/model.safetensors $OUT/EI-2/model.safetensors --ensemble --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genEns.console 2>&1
echo "== done $(date -u)"
