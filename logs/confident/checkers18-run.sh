#!/usr/bin/env bash
# Rule v18 of logs/confident/rule.md: C1, C2 (E4I's command, v16, on the shipped split: no
# held-out source, seeds 1 and 2, split seed 0), each with its familiarity refit, then stage 10
# checked by them (studies.generalisation --ensemble: A and U on val and clean).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
py=${PYTHON:-.venv/bin/python}; out=${OUT:-/work/checkers}
mkdir -p "$out"
e="--recipe best --size 160 --epochs 4 --acquisition 1 --acquisition-kind standard --look-swap 0.5
   --consistency 1.0 --implant 1 --data ../shared/data --threads 2 --split-seed 0"
for s in 1 2; do
  echo "== C$s $(date -u)"
  $py -m train $e --seed $s --name checker-C$s --out "$out/C$s" > "$out/C$s.console" 2>&1
  echo "== familiarity C$s $(date -u)"
  $py -m train.fit_familiarity "$out/C$s/model.safetensors" --data ../shared/data --write \
    --threads 2 > "$out/C$s/fit_familiarity.txt" 2>&1
done
echo "== scoring $(date -u)"
$py -m studies.generalisation checkpoints/resnet50.safetensors "$out"/C{1,2}/model.safetensors \
  --ensemble --data ../shared/data --out "$out/gen" --threads 2 > "$out/gen18.console" 2>&1
echo "== done $(date -u)"
