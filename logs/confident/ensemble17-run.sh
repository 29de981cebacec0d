#!/usr/bin/env bash
# Rule v17 of logs/confident/rule.md: R1-s0 (R1's command again, v11's first member, trained
# here with its familiarity refit), then the ensemble R1-s0, E4I-s0, E4I-s1, E4I-s2 (v16's
# members in $IMP, /work/imp) scored together (A: R1-s0's answer checked; U: all agree).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${RUNS:-/work/v11}; imp=${IMP:-/work/imp}
RUNS=$runs logs/confident/members-cpu.sh 0
echo "== scoring $(date -u)"
.venv/bin/python -m studies.generalisation "$runs/loso-R1-s0/model.safetensors" \
  "$imp"/E4I-s{0,1,2}/model.safetensors --ensemble --data ../shared/data --out "$runs/gen" \
  --threads 2 > "$runs/gen17.console" 2>&1
echo "== done $(date -u)"
