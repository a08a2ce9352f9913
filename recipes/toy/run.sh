#!/usr/bin/env bash
# The toy experiment of the rMCL paper: sMCL, rMCL, rMCL*, IE with K = 20, EMD at 50 values of t.
# Usage: recipes/toy/run.sh [--scale small|paper] [--workdir DIR]
set -euo pipefail
workdir=${workdir:-exp/toy}
source "$(dirname "$0")/../common.sh"
quick=(); [ "$scale" = small ] && quick=(--quick)

if run_stage 1; then
  announce 1 "train and score the toy predictors -> $workdir"
  ssl toy "$workdir" "${quick[@]}"
fi
