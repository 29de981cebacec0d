#!/usr/bin/env bash
# Addendum 16 of logs/loso/rule.md: GH-K1-base, GH-K1-base-1, GH-R1; familiarity; scoring.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
for run in "GH-K1-base /work/k1/base/model.safetensors" "GH-K1-base-1 /work/fw/K1-base-1/model.safetensors" "GH-R1 /work/gpu3/loso-R.safetensors"; do
  set -- $run; name=$1; src=$2
  echo "== $name $(date -u)"
  $PY -m train.group_head $src --data ../shared/data --name loso-$name --out /work/dfr/$name > /work/dfr/$name.console 2>&1
  $PY -m train.fit_familiarity /work/dfr/$name/model.safetensors --data ../shared/data --threads 2 --write > /work/dfr/$name/fit_familiarity.txt 2>&1
done
echo "== scoring $(date -u)"
$PY -m studies.generalisation /work/dfr/GH-K1-base/model.safetensors /work/dfr/GH-K1-base-1/model.safetensors /work/dfr/GH-R1/model.safetensors --data ../shared/data --out /work/dfr/gen > /work/dfr/gen.console 2>&1
echo "== done $(date -u)"
