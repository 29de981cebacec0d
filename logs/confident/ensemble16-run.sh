#!/usr/bin/env bash
# Rule v16 of logs/confident/rule.md: E4I-s0..s2 (v12's command, ER's at 4 epochs, with
# implants; split seed 0), each with its familiarity refit, then the ensemble.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
OUT=${OUT:-/work/imp}
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2 --split-seed 0"
e4="--recipe best --size 160 --epochs 4 --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 $P1"
for s in 0 1 2; do
  name=E4I-s$s
  echo "== $name $(date -u)"
  $PY -m train $e4 --implant 1 --seed $s --name loso-$name --out $OUT/$name > $OUT/$name.console 2>&1
  $PY -m train.fit_familiarity $OUT/$name/model.safetensors --data ../shared/data --write --threads 2 > $OUT/$name/fit_familiarity.txt 2>&1
done
echo "== scoring $(date -u)"
$PY -m studies.generalisation $OUT/E4I-s0/model.safetensors $OUT/E4I-s1/model.safetensors $OUT/E4I-s2/model.safetensors --ensemble --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genE4I.console 2>&1
echo "== done $(date -u)"
