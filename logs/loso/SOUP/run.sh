#!/usr/bin/env bash
# Addendum 21 of logs/loso/rule.md: SOUP, the uniform average of EI-0, EI-1, EI-2; then scoring.
#   run.sh        the average and its scoring, as they ran (17:11-17:21 UTC)
#   run.sh refit  added after that run: the soup carried EI-2's not-an-MRI detector, which
#                 refused 37% of `val` on the averaged features (train.interpolate says to
#                 refit it); refit it, then familiarity, and score again (accuracy and recall
#                 do not depend on it)
set -euo pipefail
cd /work/main
PY=.venv/bin/python
OUT=${OUT:-/work/imp}
mkdir -p $OUT/SOUP
if [ "${1:-}" = refit ]; then
  echo "== ood $(date -u)"
  $PY -m train.fit_ood $OUT/SOUP/model.safetensors --data ../shared/data --write > $OUT/SOUP/fit_ood.txt 2>&1
else
  echo "== EI-0 + EI-1 $(date -u)"
  $PY -m train.interpolate $OUT/EI-0/model.safetensors $OUT/EI-1/model.safetensors --alpha 0.5 --name loso-SOUP-half --data ../shared/data --out $OUT/SOUP/half.safetensors > $OUT/SOUP/half.console 2>&1
  echo "== + EI-2 $(date -u)"
  $PY -m train.interpolate $OUT/SOUP/half.safetensors $OUT/EI-2/model.safetensors --alpha 0.3333 --name loso-SOUP --bn-statistics training --data ../shared/data --out $OUT/SOUP/model.safetensors > $OUT/SOUP/soup.console 2>&1
fi
echo "== familiarity $(date -u)"
$PY -m train.fit_familiarity $OUT/SOUP/model.safetensors --data ../shared/data --write --threads 2 > $OUT/SOUP/fit_familiarity.txt 2>&1
echo "== scoring $(date -u)"
$PY -m studies.generalisation $OUT/SOUP/model.safetensors --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genSOUP.console 2>&1
echo "== done $(date -u)"
