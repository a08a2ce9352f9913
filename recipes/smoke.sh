#!/usr/bin/env bash
# CI smoke test on tiny data, every stage through the CLI: synth (FOA and its MIC twin) ->
# features -> train -> eval -> baseline -> report -> export -> predict -> toy.
# Usage: recipes/smoke.sh [--workdir DIR] [--stage N] [--stop-stage M]
set -euo pipefail
workdir=${workdir:-exp/smoke}
source "$(dirname "$0")/common.sh"
w=$workdir
mkdir -p "$w"
printf '[train]\nchannels = [8, 8, 8]\ngru_units = 16\ngru_layers = 1\n' > "$w/tiny.toml"
synth=(--preset resyn --clips 6 --clip-seconds 2 --fs 16000 --subsets ov1,ov2 --seed 3)

if run_stage 1; then announce 1 "synthesize tiny FOA scenes"
  ssl prep synth "$w/scenes" "${synth[@]}"
fi
if run_stage 2; then announce 2 "synthesize their MIC twin (same seed and options)"
  ssl prep synth "$w/scenes_mic" "${synth[@]}" --format mic
fi
if run_stage 3; then announce 3 "features"
  ssl prep features "$w/scenes" "$w/features"
fi
if run_stage 4; then announce 4 "train rMCL (K = 3, a few steps)"
  ssl train "$w/features" "$w/run" --method rmcl -K 3 --epochs 1 --max-steps 3 \
    --batch-size 4 --config "$w/tiny.toml"
fi
if run_stage 5; then announce 5 "eval on the test split"
  ssl eval "$w/run" "$w/evals/rmcl" --data "$w/features" --split test
fi
if run_stage 6; then announce 6 "SRP-PHAT on the MIC twin, same frames"
  ssl baseline "$w/scenes_mic" "$w/evals/srp" --data "$w/features" --method srp --grid-deg 20
fi
if run_stage 7; then announce 7 "report"
  ssl report "$w/evals/rmcl" "$w/evals/srp" --out "$w/report" --force
fi
if run_stage 8; then announce 8 "export"
  ssl export "$w/run" "$w/export" --format torchscript
fi
if run_stage 9; then announce 9 "predict on a raw recording"
  wav=$(ls "$w"/scenes/wav/*.wav | head -n 1)
  ssl predict "$w/export" "$wav" --out "$w/predictions" --force
fi
if run_stage 10; then announce 10 "toy experiment (quick)"
  ssl toy "$w/toy" --quick
fi
echo "=== smoke: every stage passed [${SECONDS}s]" >&2
