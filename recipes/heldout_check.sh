#!/usr/bin/env bash
# Learned vs classical on held-out reverberant MIC scenes (issue 21's acceptance check): 36
# training clips of 10 s (ov1 + ov2), 12 validation and 24 held-out test clips of RESYN-style
# rooms on the tetrahedral MIC array at 16 kHz, log-mel + GCC-PHAT features, the learning
# check's small CRNN and budget (25 epochs); rMCL (K = 5) and PIT with and without spatial
# augmentation, against SRP-PHAT told the true source count and estimating it, in one
# `ssl report` table. About 10 minutes on 2 CPU cores.
#
# Usage: recipes/heldout_check.sh [--workdir DIR] [--seeds "0 1 2"] [--stage N] [--stop-stage M]
#          [--jobs N] [--broadband]
#
#   --broadband   events are broadband noise bursts (4 classes: white, pink, brown and
#                 amplitude-modulated noise, written by the recipe into WORKDIR/sources and
#                 given to `ssl prep synth --sources-dir`) instead of the built-in library,
#                 whose mostly tonal sounds interfere with their own reflections in rooms
#                 (a hard case for SRP-PHAT). Default workdir exp/heldout_check[_broadband].
#
# Stages: 1 scenes, 2 features, 3 train, 4 eval, 5 baselines, 6 report.
set -euo pipefail
broadband=()
rest=()
for a in "$@"; do if [ "$a" = --broadband ]; then broadband=(x); else rest+=("$a"); fi; done
set -- "${rest[@]+"${rest[@]}"}"
workdir=${workdir:-exp/heldout_check${broadband[*]:+_broadband}}
source "$(dirname "$0")/common.sh"
w=$workdir
mkdir -p "$w"
sources=()
if [ ${#broadband[@]} -gt 0 ]; then sources=(--sources-dir "$w/sources"); broadband_sources "$w/sources"; fi
cat > "$w/synth.toml" <<'TOML'
[synth]
split_fractions = [0.5, 0.16666666666666666, 0.3333333333333333]
TOML
# The learning check's model and budget: the small recipes' CRNN, 25 epochs.
train=(--config "$(dirname "$0")/conf/train-small.toml" --epochs 25 --patience 25)
expand_runs "rmcl5:rmcl:5:z" "rmcl5_noaug:rmcl:5:none" "pit:pit:3:z" "pit_noaug:pit:3:none"

if run_stage 1; then announce 1 "MIC RESYN-style scenes (36 train / 12 val / 24 test) -> $w/scenes"
  ssl prep synth "$w/scenes" --preset resyn --format mic --fs 16000 --clips 72 \
    --clip-seconds 10 --subsets ov1,ov2 --seed 7 --config "$w/synth.toml" --jobs "$jobs" \
    "${sources[@]+"${sources[@]}"}"
fi
if run_stage 2; then announce 2 "log-mel + GCC-PHAT features -> $w/features"
  ssl prep features "$w/scenes" "$w/features" --type logmel --jobs "$jobs"
fi
if run_stage 3; then
  for r in "${runs[@]}"; do IFS=: read -r name method k seed aug <<< "$r"
    announce 3 "train $name (--augment $aug) -> $w/runs/$name"
    ssl train "$w/features" "$w/runs/$name" --method "$method" -K "$k" --seed "$seed" \
      --augment "$aug" "${train[@]}"
  done
fi
if run_stage 4; then
  for r in "${runs[@]}"; do name=${r%%:*}
    announce 4 "eval $name on the held-out test clips -> $w/evals/$name"
    ssl eval "$w/runs/$name" "$w/evals/$name" --data "$w/features" --split test
  done
fi
if run_stage 5; then
  for n in known estimate; do
    announce 5 "SRP-PHAT, --n-sources $n -> $w/evals/srp_$n"
    ssl baseline "$w/scenes" "$w/evals/srp_$n" --data "$w/features" --split test \
      --method srp --n-sources "$n"
  done
fi
if run_stage 6; then announce 6 "report -> $w/report"
  ssl report "$w"/evals/* --out "$w/report" --force
  announce 6 "done: $w/report/report.md"
fi
