#!/usr/bin/env bash
# Rule v12 of logs/confident/rule.md: ER's command at 4 epochs, seeds 0-3 on split seed 0; then the ensemble.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
P1="--holdout-source sartaj-br35h --holdout-classes meningioma --data ../shared/data --threads 2"
e="--recipe best --size 160 --epochs 4 --acquisition 1 --acquisition-kind standard --look-swap 0.5 --consistency 1.0 $P1"
for s in 0 1 2 3; do
  name=E4-s$s
  echo "== $name $(date -u)"
  $PY -m train $e --seed $s --split-seed 0 --name loso-$name --out /work/ens4/$name > /work/ens4/$name.console 2>&1
  $PY -m train.fit_familiarity /work/ens4/$name/model.safetensors --data ../shared/data --write --threads 2 > /work/ens4/$name/fit_familiarity.txt 2>&1
done
echo "== scoring $(date -u)"
$PY -m studies.generalisation /work/ens4/E4-s{0,1,2,3}/model.safetensors --ensemble --data ../shared/data --out /work/ens4/gen --threads 2 > /work/ens4/gen.console 2>&1
echo "== done $(date -u)"
