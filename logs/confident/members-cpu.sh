#!/usr/bin/env bash
# Rule v11 of logs/confident/rule.md on the CPU: one member of R1's command (seed $1), resumable.
# Then: train.fit_familiarity --write, and studies.generalisation R1 R1-s1 [R1-s2] --ensemble.
set -euo pipefail
cd /work/main
seed=${1:?SEED}; out=${OUT:-/work/v11/R1-s$seed}
PY=.venv/bin/python
$PY -m train --recipe lesion --init none --data .gpu/pack-loso1.npz --size 192 --batch-size 64 \
  --lr 0.02 --warmup-epochs 1 --freeze stem+layer1 --freeze-bn 0 --counterfactual 0.15 \
  --paint-share 0.4 --look-swap 0.5 --consistency 1.0 --loader-workers 0 --threads 2 \
  --holdout-source sartaj-br35h --holdout-classes meningioma --seed "$seed" --split-seed 0 \
  --epochs 15 --name loso-R1-s$seed --out "$out"   # resumes from $out/last_state.pt
$PY -m train.fit_familiarity "$out/model.safetensors" --data ../shared/data --write --threads 2 \
  > "$out/fit_familiarity.txt" 2>&1
# Scoring, once members are trained (R1: /work/gpu3/loso-R.safetensors, from the H200):
#   .venv/bin/python -m studies.generalisation /work/gpu3/loso-R.safetensors /work/v11/R1-s1/model.safetensors \
#     [/work/v11/R1-s2/model.safetensors] --ensemble --data ../shared/data --out /work/v11/gen --threads 2
