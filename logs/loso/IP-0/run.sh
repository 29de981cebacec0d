#!/usr/bin/env bash
# Addendum 20 of logs/loso/rule.md: IP-0, IP-1 (baseline + implants), EI-0, EI-1 (ER's command + implants); then scoring.
#   run.sh              the addendum's four runs and their scoring, as they ran
#   run.sh EI SEED ...  only E's command + implants at those seeds, each with its familiarity refit
#                       (EI_EPOCHS, default 2, and EI_NAME, default EI-, for rule v16's E4I-sSEED)
set -euo pipefail
cd /work/main
PY=.venv/bin/python
OUT=${OUT:-/work/imp}
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2 --split-seed 0"
base="--recipe baseline --acquisition 1 --epochs 30 $P1"
e="--recipe best --size 160 --epochs ${EI_EPOCHS:-2} --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 $P1"
ei() {
  for s in "$@"; do
    name=${EI_NAME:-EI-}$s
    echo "== $name $(date -u)"
    $PY -m train $e --implant 1 --seed $s --name loso-$name --out $OUT/$name > $OUT/$name.console 2>&1
    echo "== familiarity $name $(date -u)"
    $PY -m train.fit_familiarity $OUT/$name/model.safetensors --data ../shared/data --write --threads 2 > $OUT/$name/fit_familiarity.txt 2>&1
  done
}
if [ "${1:-}" = EI ]; then shift; ei "$@"; exit 0; fi
for s in 0 1; do
  name=IP-$s
  echo "== $name $(date -u)"
  $PY -m train $base --implant 1 --seed $s --name loso-$name --out $OUT/$name > $OUT/$name.console 2>&1
done
echo "== scoring IP $(date -u)"
$PY -m studies.generalisation $OUT/IP-0/model.safetensors $OUT/IP-1/model.safetensors --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genIP.console 2>&1
ei 0 1
echo "== scoring EI $(date -u)"
$PY -m studies.generalisation $OUT/EI-0/model.safetensors $OUT/EI-1/model.safetensors --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genEI.console 2>&1
echo "== done $(date -u)"
