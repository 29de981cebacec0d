#!/usr/bin/env bash
# Addendum 19 of logs/loso/rule.md: SB-0, SB-1 (baseline + source balance), ES (E's command + source balance); then scoring.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2"
base="--recipe baseline --acquisition 1 --epochs 30 $P1"
for run in "SB-0 --seed 0" "SB-1 --seed 1"; do
  set -- $run; name=$1; shift
  echo "== $name $(date -u)"
  $PY -m train $base --source-balance 1 "$@" --name loso-$name --out /work/mx/$name > /work/mx/$name.console 2>&1
done
echo "== scoring SB $(date -u)"
$PY -m studies.generalisation /work/mx/SB-0/model.safetensors /work/mx/SB-1/model.safetensors --data ../shared/data --out /work/mx/gen > /work/mx/genSB.console 2>&1
e="--recipe best --size 160 --epochs 2 --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 --seed 0 $P1"
echo "== ES $(date -u)"
$PY -m train $e --source-balance 1 --name loso-ES --out /work/mx/ES > /work/mx/ES.console 2>&1
echo "== familiarity ES $(date -u)"
$PY -m train.fit_familiarity /work/mx/ES/model.safetensors --data ../shared/data --write --threads 2 > /work/mx/ES/fit_familiarity.txt 2>&1
echo "== scoring ES $(date -u)"
$PY -m studies.generalisation /work/mx/ES/model.safetensors --data ../shared/data --out /work/mx/gen > /work/mx/genES.console 2>&1
echo "== done $(date -u)"
