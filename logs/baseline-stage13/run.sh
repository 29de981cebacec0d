#!/usr/bin/env bash
# Baseline stage 13 (logs/baseline-stage13/rule.md): stage 11's steps (probe, the run, the
# readings) with the second and third conv layers' kernels spread, and a 3600 s budget.
STAGE=stage13 NAME=D2 BUDGET=3600 FLAGS='--arch-kwargs {"dilation":[1,2,2]}' \
  exec "$(dirname "${BASH_SOURCE[0]}")/../baseline-stage11/run.sh" "$@"
