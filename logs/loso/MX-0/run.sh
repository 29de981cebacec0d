#!/usr/bin/env bash
# Addendum 17 of logs/loso/rule.md: MX-0, MX-1 (baseline + MixStyle), ER, EM (E's command, + MixStyle); then scoring.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2"
base="--recipe baseline --acquisition 1 --epochs 30 $P1"
for run in "MX-0 --mixstyle 0.5 --seed 0" "MX-1 --mixstyle 0.5 --seed 1"; do
  set -- $run; name=$1; shift
  echo "== $name $(date -u)"
  $PY -m train $base "$@" --name loso-$name --out /work/mx/$name > /work/mx/$name.console 2>&1
done
echo "== scoring MX $(date -u)"
$PY -m studies.generalisation /work/mx/MX-0/model.safetensors /work/mx/MX-1/model.safetensors --data ../shared/data --out /work/mx/gen > /work/mx/gen.console 2>&1
e="--recipe best --size 160 --epochs 2 --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 --seed 0 $P1"
for run in "ER" "EM --mixstyle 0.5"; do
  set -- $run; name=$1; shift
  echo "== $name $(date -u)"
  $PY -m train $e "$@" --name loso-$name --out /work/mx/$name > /work/mx/$name.console 2>&1
  echo "== familiarity $name $(date -u)"
  $PY -m train.fit_familiarity /work/mx/$name/model.safetensors --data ../shared/data --write --threads 2 > /work/mx/$name/fit_familiarity.txt 2>&1
done
echo "== scoring E $(date -u)"
$PY -m studies.generalisation /work/mx/ER/model.safetensors /work/mx/EM/model.safetensors --data ../shared/data --out /work/mx/gen > /work/mx/genE.console 2>&1
echo "== done $(date -u)"
