#!/usr/bin/env bash
# Train the candidates of logs/resnet50-stage10/rule.md on a lent GPU machine, from packs
# (train.pack; docs/training.md "Training on a lent GPU"):
#     scripts/gpu_train.sh OUT                    # R and B, side by side
#     PLAN=baseline2 scripts/gpu_train.sh OUT     # B2 (the rule's addendum): two phases
#     PLAN=loso1 scripts/gpu_train.sh OUT         # R's recipe on protocol 1 (.gpu/pack-loso1.npz)
#     PLAN=loso HOLDOUT=figshare scripts/gpu_train.sh OUT   # protocol 2 (.gpu/pack-loso-figshare.npz)
#     PLAN=distill scripts/gpu_train.sh OUT       # baseline stage 6's L and L-cf (logs/baseline-stage6/rule.md)
#     PLAN=members scripts/gpu_train.sh OUT       # rule v11's members of R1 (logs/confident/rule.md)
#     PLAN=members MEMBER_NAME=loso-RI EXTRA="--implant 1" scripts/gpu_train.sh OUT   # rule v15's
# Reads .gpu/pack.npz (python -m train.pack data) and .gpu/imagenet-int8.safetensors
# (python -m train.pack weights). Times one epoch of each run, then sizes each run to fit
# BUDGET seconds of epochs by the rule's formula, trains both side by side, and leaves in OUT:
# resnet50.safetensors in 15 MB parts (resnet50.safetensors.part-aa, -ab, ...: `cat` them back),
# baseline.safetensors and runs.tar.gz (each run's args, history, log; the timing probes').
# EXTRA is appended to every training command (CPU smoke test: EXTRA="--limit 48 --device cpu").
# CHECK=1 tries every training command of the plan here first (train --check: data, model, epoch
# plan and the teacher's split, on the CPU, no step): a command that cannot start stops here.
set -uo pipefail
out=$(realpath -m "${1:?OUT}")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-python3}
budget=${BUDGET:-300}; r50_cap=${R50_CAP:-40}; base_cap=${BASE_CAP:-100}
runs=${RUNS:-/tmp/gpu-runs}
pack=${PACK:-.gpu/pack.npz}
mkdir -p "$out" "$runs"
export PYTHONPATH=.:.gpu/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export BRAINMRI_CACHE=${BRAINMRI_CACHE:-/tmp/brainmri-cache}
start=$(date +%s)
say() { echo "== $* (+$(( $(date +%s) - start )) s)"; }

# The two candidates, fixed by the rule (epochs come from the probes below).
r50=(--recipe lesion --init none --name resnet50 --data "$pack" --size 192 --batch-size 64
     --lr 0.02 --warmup-epochs 1 --freeze stem+layer1 --freeze-bn 0 --counterfactual 0.15
     --paint-share 0.4 --look-swap 0.5 --consistency 1.0 --loader-workers 12 --threads 2)
base=(--recipe lesion-baseline --init none --name baseline --data "$pack" --size 160
      --batch-size 64 --lr 0.003 --warmup-epochs 1 --loader-workers 3 --threads 1)

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [[ ${PLAN:-stage10} != distill ]]; then   # every plan but distill starts from ImageNet
  say "restore ImageNet weights"
  "$py" -m train.pack restore .gpu/imagenet-int8.safetensors || exit 1
fi

train() {  # NAME EPOCHS ARGS...: one run into $runs/NAME, its output in $runs/NAME.txt
  local name=$1 epochs=$2; shift 2
  local check=(); [[ ${CHECK:-0} == 1 ]] && check=(--check --device cpu)
  "$py" -m train "$@" --epochs "$epochs" --out "$runs/$name" ${EXTRA:-} "${check[@]}" >"$runs/$name.txt" 2>&1
}
seconds() {  # the first epoch's seconds in a run's history (CHECK=1: none, so 1)
  [[ ${CHECK:-0} == 1 ]] && { echo 1; return; }
  "$py" -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['seconds'])" "$runs/$1/history.json"
}
finish() {  # the runs' args, histories and logs into OUT/runs.tar.gz, then what OUT holds
  (cd "$runs" && tar czf "$out/runs.tar.gz" --exclude='*.pt' --exclude='*.safetensors' .)
  ls -la "$out"; say "done"
}
epochs() {  # SECONDS CAP: the rule's formula, min(CAP, max(2, floor(BUDGET / SECONDS)))
  "$py" -c "import math,sys; s,c,b=map(float,sys.argv[1:]); print(int(min(c, max(2, math.floor(b/s)))))" "$1" "$2" "$budget"
}

if [[ ${PLAN:-stage10} == loso1 || ${PLAN:-stage10} == loso ]]; then
  # R's recipe, LOSO_EPOCHS epochs, leaving HOLDOUT's meningiomas out (reported only):
  # protocol 1 (HOLDOUT=sartaj-br35h, the default; PLAN=loso1 as first run) or protocol 2
  # (HOLDOUT=figshare), from .gpu/pack-loso-$HOLDOUT.npz (python -m train.pack data
  # --holdout-source $HOLDOUT --holdout-classes meningioma ...).
  holdout=${HOLDOUT:-sartaj-br35h}
  [[ $PLAN == loso1 ]] && holdout=sartaj-br35h && pack=${PACK:-.gpu/pack-loso1.npz}
  [[ $PLAN == loso ]] && pack=${PACK:-.gpu/pack-loso-$holdout.npz}
  name=loso-R-$holdout
  say "training R's recipe with $holdout's meningiomas held out"
  # (repeated flags: the later one holds)
  train "$name" "${LOSO_EPOCHS:-15}" "${r50[@]}" --data "$pack" --holdout-source "$holdout" \
    --holdout-classes meningioma --loader-workers 14; s1=$?
  say "trained: exit $s1"; tail -n 3 "$runs/$name.txt"
  [[ -f $runs/$name/model.safetensors ]] && split -b 15m "$runs/$name/model.safetensors" "$out/$name.safetensors.part-"
  finish; exit $s1
fi
if [[ ${PLAN:-stage10} == members ]]; then
  # Rule v11 (logs/confident/rule.md): R1's command (PLAN=loso1) again with seeds MEMBER_SEEDS
  # on R1's own validation split (--split-seed 0), each returned rounded to 8 bits (train.pack
  # checkpoint): two members fit the 64 MiB of files a call brings back. Rule v15's members
  # add EXTRA="--implant 1" under MEMBER_NAME=loso-RI.
  pack=${PACK:-.gpu/pack-loso1.npz}; status=0
  for seed in ${MEMBER_SEEDS:-1 2}; do
    name=${MEMBER_NAME:-loso-R1}-s$seed
    say "training $name"
    train "$name" "${LOSO_EPOCHS:-15}" "${r50[@]}" --data "$pack" --holdout-source sartaj-br35h \
      --holdout-classes meningioma --loader-workers 14 --seed "$seed" --split-seed 0 --name "$name"; s1=$?
    say "trained $name: exit $s1"; tail -n 3 "$runs/$name.txt"; (( status |= s1 ))
    if [[ -f $runs/$name/model.safetensors ]]; then
      "$py" -m train.pack checkpoint "$runs/$name/model.safetensors" --out "$runs/$name-int8.safetensors" &&
        split -b 15m "$runs/$name-int8.safetensors" "$out/$name-int8.safetensors.part-"
    fi
  done
  finish; exit $status
fi
if [[ ${PLAN:-stage10} == distill ]]; then
  # Baseline stage 6: stage 5's step (K: the lesion recipe taught by the stage-10 ResNet-50),
  # longer and from the shipped baseline, as L and L-cf (L with twice the tumours painted out).
  # The teacher travels rounded (python -m train.pack checkpoint ... --out .gpu/teacher-int8.safetensors).
  "$py" -m train.pack restore .gpu/teacher-int8.safetensors --out /tmp/teacher.safetensors || exit 1
  d=(--recipe lesion-baseline --init checkpoints/baseline.safetensors --name baseline --data "$pack"
     --size 160 --teacher /tmp/teacher.safetensors --distill 0.7 --distill-temperature 2
     --loader-workers 7 --threads 1)
  say "timing probes: one epoch of each"
  train probe-L 1 "${d[@]}" & p1=$!
  train probe-L-cf 1 "${d[@]}" --counterfactual 0.5 & p2=$!
  wait $p1 || { tail -30 "$runs/probe-L.txt"; exit 1; }
  wait $p2 || { tail -30 "$runs/probe-L-cf.txt"; exit 1; }
  e1=$(epochs "$(seconds probe-L)" "$base_cap"); e2=$(epochs "$(seconds probe-L-cf)" "$base_cap")
  say "probe epochs: $(seconds probe-L) s, $(seconds probe-L-cf) s -> epochs $e1, $e2"
  train L "$e1" "${d[@]}" & t1=$!
  train L-cf "$e2" "${d[@]}" --counterfactual 0.5 & t2=$!
  wait $t1; s1=$?; wait $t2; s2=$?
  say "trained: L exit $s1, L-cf exit $s2"
  tail -n 3 "$runs/L.txt" "$runs/L-cf.txt"
  for n in L L-cf; do
    [[ -f $runs/$n/model.safetensors ]] && cp "$runs/$n/model.safetensors" "$out/baseline-$n.safetensors"
  done
  finish
  [[ $s1 == 0 && $s2 == 0 ]]; exit
fi
if [[ ${PLAN:-stage10} == baseline2 ]]; then
  # B2: the baseline recipe from scratch, then the lesion signals from its weights.
  plain=(--recipe baseline --init none --name baseline --data "$pack" --size 160 --loader-workers 14 --threads 2)
  lesion=(--recipe lesion-baseline --name baseline --data "$pack" --size 160 --loader-workers 14 --threads 2)
  say "timing probes: one epoch of each phase"
  train probe-plain 1 "${plain[@]}" || { tail -30 "$runs/probe-plain.txt"; exit 1; }
  train probe-lesion 1 "${lesion[@]}" --init none || { tail -30 "$runs/probe-lesion.txt"; exit 1; }
  e1=$(budget=${PHASE_BUDGET:-120} epochs "$(seconds probe-plain)" "${PLAIN_CAP:-80}")
  e2=$(budget=${PHASE_BUDGET:-120} epochs "$(seconds probe-lesion)" "${LESION_CAP:-48}")
  say "probe epochs: $(seconds probe-plain) s, $(seconds probe-lesion) s -> epochs $e1, $e2"
  train baseline-plain "$e1" "${plain[@]}"; s1=$?
  say "phase 1: exit $s1"
  train baseline "$e2" "${lesion[@]}" --init "$runs/baseline-plain/model.safetensors"; s2=$?
  say "phase 2: exit $s2"
  tail -n 3 "$runs/baseline-plain.txt" "$runs/baseline.txt"
  [[ -f $runs/baseline-plain/model.safetensors ]] && cp "$runs/baseline-plain/model.safetensors" "$out/baseline-plain.safetensors"
  [[ -f $runs/baseline/model.safetensors ]] && cp "$runs/baseline/model.safetensors" "$out/baseline.safetensors"
  finish
  [[ $s1 == 0 && $s2 == 0 ]]; exit
fi

say "timing probes: one epoch of each"
train probe-resnet50 1 "${r50[@]}" & p1=$!
train probe-baseline 1 "${base[@]}" & p2=$!
wait $p1 || { tail -30 "$runs/probe-resnet50.txt"; exit 1; }
wait $p2 || { tail -30 "$runs/probe-baseline.txt"; exit 1; }
e_r50=$(epochs "$(seconds probe-resnet50)" "$r50_cap")
e_base=$(epochs "$(seconds probe-baseline)" "$base_cap")
say "probe epochs: resnet50 $(seconds probe-resnet50) s, baseline $(seconds probe-baseline) s -> epochs $e_r50, $e_base"

say "training"
train resnet50 "$e_r50" "${r50[@]}" & t1=$!
train baseline "$e_base" "${base[@]}" & t2=$!
wait $t1; s1=$?; wait $t2; s2=$?
say "trained: resnet50 exit $s1, baseline exit $s2"
tail -n 3 "$runs/resnet50.txt" "$runs/baseline.txt"

[[ -f $runs/resnet50/model.safetensors ]] && split -b 15m "$runs/resnet50/model.safetensors" "$out/resnet50.safetensors.part-"
[[ -f $runs/baseline/model.safetensors ]] && cp "$runs/baseline/model.safetensors" "$out/baseline.safetensors"
finish
[[ $s1 == 0 && $s2 == 0 ]]
