#!/usr/bin/env bash
# Addendum 14 of logs/loso/rule.md: FW-0, FW-1 (wide acquisition), K1-base-1; then scoring.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
common="--recipe baseline --acquisition 1 --holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2 --epochs 30"
for run in "FW-0 --acquisition-kind wide --seed 0" "FW-1 --acquisition-kind wide --seed 1" "K1-base-1 --seed 1"; do
  set -- $run; name=$1; shift
  echo "== $name $(date -u)"
  $PY -m train $common "$@" --name loso-$name --out /work/fw/$name > /work/fw/$name.console 2>&1
done
echo "== scoring $(date -u)"
$PY -m studies.generalisation /work/fw/FW-0/model.safetensors /work/fw/FW-1/model.safetensors /work/fw/K1-base-1/model.safetensors --data ../shared/data --out /work/fw/gen > /work/fw/gen.console 2>&1
echo "== done $(date -u)"
