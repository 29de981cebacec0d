#!/usr/bin/env bash
# Rule v16 of logs/confident/rule.md: E4I-s0..s2 (v12's command, ER's at 4 epochs, with
# implants; split seed 0; by addendum 20's script), each with its familiarity refit, then the ensemble.
set -euo pipefail
cd /work/main
OUT=${OUT:-/work/imp}
OUT=$OUT EI_EPOCHS=4 EI_NAME=E4I-s logs/loso/IP-0/run.sh EI 0 1 2
echo "== scoring $(date -u)"
.venv/bin/python -m studies.generalisation $OUT/E4I-s0/model.safetensors $OUT/E4I-s1/model.safetensors $OUT/E4I-s2/model.safetensors --ensemble --data ../shared/data --out $OUT/gen --threads 2 > $OUT/genE4I.console 2>&1
echo "== done $(date -u)"
