#!/usr/bin/env bash
# Rule v14 of logs/confident/rule.md: EI-2 (ER's command + implants, seed 2, split seed 0, by
# addendum 20's script), then the ensemble of EI-0, EI-1 (addendum 20 of logs/loso/rule.md) and EI-2.
set -euo pipefail
cd /work/main
OUT=${OUT:-/work/imp}
OUT=$OUT logs/loso/IP-0/run.sh EI 2
echo "== scoring $(date -u)"
.venv/bin/python -m studies.generalisation $OUT/EI-0/model.safetensors $OUT/EI-1/model.safetensors $OUT/EI-2/model.safetensors --ensemble --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genEns.console 2>&1
echo "== done $(date -u)"
