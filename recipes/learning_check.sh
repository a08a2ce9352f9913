#!/usr/bin/env bash
# Does rMCL learn? On a small RESYN-style set synthesized on a CPU, rMCL (K = 5) must reach
# a validation oracle error well below that of K random directions, and below PIT trained
# with the same budget; multi-ACCDOA (the DCASE baseline, 3 tracks) is trained beside them.
# About 4 minutes on 2 CPU cores. --motion: the same with moving sources (TAU-NIGENS style).
#
# Usage: recipes/learning_check.sh [--workdir DIR] [--stage N] [--stop-stage M] [--jobs N]
#          [--motion]
set -euo pipefail
motion=()
rest=()
for a in "$@"; do if [ "$a" = --motion ]; then motion=(--motion); else rest+=("$a"); fi; done
set -- "${rest[@]+"${rest[@]}"}"
workdir=${workdir:-exp/learning_check}
source "$(dirname "$0")/common.sh"
# The same small model and budget for every method: the small recipes' CRNN, 30 epochs.
train=(--config "$(dirname "$0")/conf/train-small.toml" --epochs 30 --patience 30)
w=$workdir
mkdir -p "$w"

if run_stage 1; then announce 1 "synthesize RESYN-style scenes -> $w/scenes"
  ssl prep synth "$w/scenes" --preset resyn --fs 16000 --clips 45 --clip-seconds 15 \
    --seed 0 --jobs "$jobs" "${motion[@]+"${motion[@]}"}"
fi
if run_stage 2; then announce 2 "log-mel + intensity features -> $w/features"
  ssl prep features "$w/scenes" "$w/features" --type logmel
fi
if run_stage 3; then announce 3 "train rMCL, K = 5 -> $w/rmcl"
  ssl train "$w/features" "$w/rmcl" --method rmcl -K 5 --seed 0 "${train[@]}"
fi
if run_stage 4; then announce 4 "train PIT (one slot per source) -> $w/pit"
  ssl train "$w/features" "$w/pit" --method pit --seed 0 "${train[@]}"
fi
if run_stage 5; then announce 5 "train multi-ACCDOA (ADPIT, 3 tracks) -> $w/accdoa"
  ssl train "$w/features" "$w/accdoa" --method accdoa -K 3 --seed 0 "${train[@]}"
fi
if run_stage 6; then announce 6 "validation oracle error vs K random directions"
  "${SSL_PYTHON:-python3}" -m ssl_toolkit.training.check "$w/features" "$w/rmcl" "$w/pit" \
    "$w/accdoa"
fi
