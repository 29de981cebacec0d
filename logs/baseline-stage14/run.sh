#!/usr/bin/env bash
# Baseline stage 14 (logs/baseline-stage14/rule.md): stage 2's three phases from scratch with
# the second and third conv layers' kernels spread (DS), then the same without (C, the control
# on this machine); each read as stage 11's run.sh reads its run. A phase whose model exists is
# skipped and an interrupted one resumes from its last_state.pt, so the script can be run again.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
P=${PYTHON:-.venv/bin/python}
D=${BRAINMRI_DATA:-../shared/data}
R=runs/stage14
mkdir -p $R

phase() {  # OUT ARGS...: one training call unless its model is there
  local out=$1; shift
  [[ -f $R/$out/model.safetensors ]] && return 0
  echo "$out: start $(date -u)"
  $P -m train "$@" --data $D --threads 2 --out $R/$out > $R/$out.txt 2>&1
  local s=$?; echo "$out: exit $s $(date -u)"; return $s
}

readings() {  # RUN: stage 11's readings
  local M=$R/$1/model.safetensors O=$R/$1
  [[ -f $O/generalisation.txt ]] && grep -q . $O/generalisation.txt && return 0
  $P -m train.fit_ood $M --data $D --write > $O/fit_ood.txt 2>&1
  $P -m train.fit_familiarity $M --data $D --write --threads 2 > $O/fit_familiarity.txt 2>&1
  $P -m studies.lesion_masked $M --data $D --split val --out $O/lesion_masked-val.json > $O/lesion_masked-val.txt 2>&1
  $P -m studies.generalisation $M --data $D --out $O/gen > $O/generalisation.txt 2>&1
  echo "$1: read $(date -u)"
}

chain() {  # NAME [FLAGS...]: stage 2's phases (logs/baseline/args.json, logs/baseline-stage2/)
  local n=$1; shift
  phase $n-1 --recipe baseline --init none "$@" "${seed[@]}" || return 1
  phase $n-2 --recipe lesion-baseline --init $R/$n-1/model.safetensors "${seed[@]}" || return 1
  phase $n-3 --recipe lesion-baseline --init $R/$n-2/model.safetensors --lr 0.0005 "${seed[@]}" || return 1
  readings $n-3
}

# SEED (the addendum "seeds 1 and 2"): the same pair at another random start on the same
# validation split (`--seed S --split-seed 0`), named DS-sS and C-sS; unset: seed 0, DS and C.
seed=(); tag=""
[[ -n ${SEED:-} ]] && { seed=(--seed $SEED --split-seed 0); tag=-s$SEED; }
for n in ${ORDER:-DS C}; do
  case $n in
    DS) chain DS$tag --arch-kwargs '{"dilation":[1,2,2]}' ;;
    C) chain C$tag ;;
  esac
done
echo "done $(date -u)"
