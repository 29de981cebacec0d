#!/usr/bin/env bash
# Rule v10 of logs/confident/rule.md: the members (seeds 1-3 on split seed 0) of ER and K1-base.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2"
e="--recipe best --size 160 --epochs 2 --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 $P1"
base="--recipe baseline --acquisition 1 --epochs 30 $P1"
for s in 1 2 3; do
  name=ER-s$s
  echo "== $name $(date -u)"
  $PY -m train $e --seed $s --split-seed 0 --name loso-$name --out /work/ens/$name > /work/ens/$name.console 2>&1
  $PY -m train.fit_familiarity /work/ens/$name/model.safetensors --data ../shared/data --write --threads 2 > /work/ens/$name/fit_familiarity.txt 2>&1
done
for s in 1 2 3; do
  name=K1-base-s$s
  echo "== $name $(date -u)"
  $PY -m train $base --seed $s --split-seed 0 --name loso-$name --out /work/ens/$name > /work/ens/$name.console 2>&1
  $PY -m train.fit_familiarity /work/ens/$name/model.safetensors --data ../shared/data --write --threads 2 > /work/ens/$name/fit_familiarity.txt 2>&1
done
echo "== members done $(date -u)"

# then, once the members were trained:
PY=.venv/bin/python
echo "== scoring E family $(date -u)"
$PY -m studies.generalisation /work/mx/ER/model.safetensors /work/ens/ER-s1/model.safetensors /work/ens/ER-s2/model.safetensors /work/ens/ER-s3/model.safetensors --ensemble --data ../shared/data --out /work/ens/gen --threads 2 > /work/ens/genE.console 2>&1
echo "== scoring baseline family $(date -u)"
$PY -m studies.generalisation /work/k1/base/model.safetensors /work/ens/K1-base-s1/model.safetensors /work/ens/K1-base-s2/model.safetensors /work/ens/K1-base-s3/model.safetensors --ensemble --data ../shared/data --out /work/ens/gen --threads 2 > /work/ens/genK.console 2>&1
echo "== scored $(date -u)"
