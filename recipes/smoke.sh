#!/usr/bin/env bash
# CI smoke test on tiny data: synth -> features -> train -> export -> predict -> toy.
# Usage: recipes/smoke.sh [--workdir DIR] [--stage N] [--stop-stage M]
set -euo pipefail
workdir=${workdir:-exp/smoke}
source "$(dirname "$0")/common.sh"
mkdir -p "$workdir"
printf '[train]\nchannels = [8, 8, 8]\ngru_units = 16\ngru_layers = 1\n' > "$workdir/tiny.toml"

if run_stage 1; then announce 1 "synthesize tiny scenes"
  ssl prep synth "$workdir/scenes" --preset resyn --clips 6 --clip-seconds 2 --fs 16000 \
    --subsets ov1,ov2 --seed 3
fi
if run_stage 2; then announce 2 "features"
  ssl prep features "$workdir/scenes" "$workdir/features"
fi
if run_stage 3; then announce 3 "train rMCL (K = 3, a few steps)"
  ssl train "$workdir/features" "$workdir/run" --method rmcl -K 3 --epochs 1 --max-steps 3 \
    --batch-size 4 --config "$workdir/tiny.toml"
fi
if run_stage 4; then announce 4 "export"
  ssl export "$workdir/run" "$workdir/export" --format torchscript
fi
if run_stage 5; then announce 5 "predict on a raw recording"
  wav=$(ls "$workdir"/scenes/wav/*.wav | head -n 1)
  ssl predict "$workdir/export" "$wav" --out "$workdir/predictions" --force
fi
if run_stage 6; then announce 6 "toy experiment (quick)"
  ssl toy "$workdir/toy" --quick
fi
