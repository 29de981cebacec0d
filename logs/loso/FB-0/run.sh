#!/usr/bin/env bash
# Addendum 15 of logs/loso/rule.md: FB-0, FB-1 (blurred crops); then scoring.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
common="--recipe baseline --acquisition 1 --holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2 --epochs 30"
for run in "FB-0 --blur 0.01 --seed 0" "FB-1 --blur 0.01 --seed 1"; do
  set -- $run; name=$1; shift
  echo "== $name $(date -u)"
  $PY -m train $common "$@" --name loso-$name --out /work/fw/$name > /work/fw/$name.console 2>&1
done
echo "== scoring $(date -u)"
$PY -m studies.generalisation /work/fw/FB-0/model.safetensors /work/fw/FB-1/model.safetensors --data ../shared/data --out /work/fw/genb > /work/fw/genb.console 2>&1
echo "== done $(date -u)"
