#!/usr/bin/env bash
# Rule v13 of logs/confident/rule.md: R1 (the shipped recipe on protocol 1) checked by E's members.
set -euo pipefail
cd /work/main
PY=.venv/bin/python
echo "== R1 + E4 $(date -u)"
$PY -m studies.generalisation /work/gpu3/loso-R.safetensors /work/ens4/E4-s{0,1,2,3}/model.safetensors \
  --ensemble --data ../shared/data --out /work/ens13/e4 --threads 2 > /work/ens13/e4.console 2>&1
echo "== R1 + ER $(date -u)"
$PY -m studies.generalisation /work/gpu3/loso-R.safetensors /work/mx/ER/model.safetensors /work/ens/ER-s{1,2}/model.safetensors \
  --ensemble --data ../shared/data --out /work/ens13/er --threads 2 > /work/ens13/er.console 2>&1
echo "== done $(date -u)"
