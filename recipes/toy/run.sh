#!/usr/bin/env bash
# The toy experiment of the rMCL paper: sMCL, rMCL, rMCL*, IE with K = 20, EMD at 50 values of t.
# Usage: recipes/toy/run.sh [--scale small|paper] [--workdir DIR]
#
#   --scale small   (default) about 1.5 min on 2 CPU cores: a 2 x 128 ReLU MLP, 3,000 steps of
#                   256 samples per method (and per IE member).
#   --scale paper   the authors' sizes: a 2 x 256 ReLU MLP, 15,625 steps of 128 samples
#                   (20 epochs of 100,000), about 12 min on 2 CPU cores.
#
# Writes summary.csv / summary.md (mean EMD per method next to the paper's 0.17 rMCL,
# 0.19 sMCL, 0.62 IE), emd.csv, emd.png and hypotheses.png into the workdir.
set -euo pipefail
workdir=${workdir:-exp/toy}
source "$(dirname "$0")/../common.sh"
size=(); [ "$scale" = paper ] && size=(--paper)

if run_stage 1; then
  announce 1 "train and score the toy predictors -> $workdir"
  ssl toy "$workdir" "${size[@]}"
fi
