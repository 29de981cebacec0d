#!/usr/bin/env bash
# Baseline stage 12 (logs/baseline-stage12/rule.md): stage 11's steps (probe, the run, the
# readings) with CF's flag and a 2100 s budget.
STAGE=stage12 NAME=CF BUDGET=2100 FLAGS="--counterfactual 0.5" \
  exec "$(dirname "${BASH_SOURCE[0]}")/../baseline-stage11/run.sh" "$@"
