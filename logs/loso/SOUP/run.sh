#!/usr/bin/env bash
# Addendum 21 of logs/loso/rule.md: SOUP, the uniform average of EI-0, EI-1, EI-2; then scoring.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
OUT=${OUT:-/work/imp}
mkdir -p $OUT/SOUP
echo "== EI-0 + EI-1 $(date -u)"
$PY -m train.interpolate $OUT/EI-0/model.safetensors $OUT/EI-1/model.safetensors --alpha 0.5 --name loso-SOUP-half --data ../shared/data --out $OUT/SOUP/half.safetensors > $OUT/SOUP/half.console 2>&1
echo "== + EI-2 $(date -u)"
$PY -m train.interpolate $OUT/SOUP/half.safetensors $OUT/EI-2/model.safetensors --alpha 0.3333 --name loso-SOUP --bn-statistics training --data ../shared/data --out $OUT/SOUP/model.safetensors > $OUT/SOUP/soup.console 2>&1
echo "== familiarity $(date -u)"
$PY -m train.fit_familiarity $OUT/SOUP/model.safetensors --data ../shared/data --write --threads 2 > $OUT/SOUP/fit_familiarity.txt 2>&1
echo "== scoring $(date -u)"
$PY -m studies.generalisation $OUT/SOUP/model.safetensors --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genSOUP.console 2>&1
echo "== done $(date -u)"
