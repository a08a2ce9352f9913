#!/usr/bin/env bash
# STARSS23 (DCASE 2023/2024 SELD development set) or any DCASE 2020-2024 dataset: rMCL and
# PIT next to the DCASE baseline's multi-ACCDOA (ADPIT), on the user's copy of the data, in
# one `ssl report` table; optionally with the DCASE baseline's own result files scored by
# the same metrics.
#
# Usage: recipes/starss23/run.sh --data-root DIR [--format foa|mic] [--scale small|medium|paper]
#          [--seeds "0 1 2"] [--stage N] [--stop-stage M] [--workdir DIR] [--jobs N]
#          [--dcase-results DIR] [--fixture]
#
#   --data-root DIR   the dataset folder: foa_dev/ (or mic_dev/) and metadata_dev/, with the
#                     dev-train-*/dev-test-* sub-folders of STARSS22/23 and DCASE 2024, or the
#                     fold-prefixed files of TAU-NIGENS 2020/2021 (official splits; see
#                     `ssl prep import --help` for --val-folds/--test-folds).
#   --format foa|mic  which audio to use (default foa). Features as the DCASE baseline: FOA
#                     log-mel + intensity vectors, MIC log-mel + GCC-PHAT (`--type logmel`).
#   --scale small     (default) CPU-sized CRNN (recipes/conf/train-small.toml), one seed.
#   --scale medium    the same CRNN, 30 epochs (recipes/conf/train-medium.toml), 3 seeds.
#   --scale paper     the default CRNN, 100 epochs (recipes/conf/train-paper.toml); a GPU.
#   --dcase-results DIR  a folder of DCASE result CSVs (<clip>.csv per test clip, e.g. the
#                     official baseline's output) scored as one more row of the table.
#   --fixture         CI smoke: build a tiny STARSS-style dataset in WORKDIR/fixture (code,
#                     no download) and train each method a few steps; --data-root not needed.
#
# Stages: 1 import, 2 features, 3 train (rMCL K=5, PIT, multi-ACCDOA class-agnostic and
# class-aware), 4 eval (+ DCASE result files in each eval's dcase/), 5 score --dcase-results,
# 6 report. Every stage reuses an output built with the same config.
set -euo pipefail
format=foa
dcase_results=
fixture=
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --format) format=$2; shift 2 ;;
    --dcase-results) dcase_results=$2; shift 2 ;;
    --fixture) fixture=yes; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
set -- "${rest[@]+"${rest[@]}"}"
workdir=${workdir:-exp/starss23}
source "$(dirname "$0")/../common.sh"
w=$workdir
mkdir -p "$w"
case "$format" in foa|mic) ;; *) echo "--format must be foa or mic" >&2; exit 2 ;; esac
[ "$scale" != paper ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
conf=$(cd "$(dirname "$0")/../conf" && pwd)
train_toml="$conf/train-$scale.toml"
short=()
if [ -n "$fixture" ]; then
  data_root="$w/fixture"
  printf '[train]\nchannels = [8, 8, 8]\ngru_units = 16\ngru_layers = 1\n' > "$w/tiny.toml"
  train_toml="$w/tiny.toml"; short=(--epochs 1 --max-steps 3 --batch-size 4)
  if run_stage 1 && [ ! -d "$data_root/metadata_dev" ]; then
    announce 0 "tiny STARSS-style fixture -> $data_root"
    "${SSL_PYTHON:-python}" -m ssl_toolkit.testing dcase-fixture "$data_root" --family starss \
      --format "$format" --distance
  fi
fi
[ -n "$data_root" ] || { echo "give --data-root DIR (the dataset) or --fixture" >&2; exit 2; }

if run_stage 1; then announce 1 "import $data_root ($format) -> $w/scenes"
  ssl prep import "$data_root" "$w/scenes" --layout dcase --format "$format"
fi
if run_stage 2; then announce 2 "log-mel features -> $w/features"
  ssl prep features "$w/scenes" "$w/features" --type logmel --jobs "$jobs"
fi
# name:method:K:extra options
models=(rmcl5:rmcl:5: pit:pit:3: accdoa:accdoa:3: "accdoa_cls:accdoa:3:--classes")
expand_runs "${models[@]}"  # runs: name:method:K:seed:extra options
if run_stage 3; then
  for r in "${runs[@]}"; do IFS=: read -r name method k s extra <<< "$r"
    announce 3 "train $name ($method, K = $k, seed $s) -> $w/runs/$name"
    # shellcheck disable=SC2086  # $extra is a list of options
    ssl train "$w/features" "$w/runs/$name" --method "$method" -K "$k" --seed "$s" \
      --config "$train_toml" "${short[@]+"${short[@]}"}" $extra
  done
fi
if run_stage 4; then
  for r in "${runs[@]}"; do name=${r%%:*}
    announce 4 "eval $name -> $w/evals/$name (DCASE result files in dcase/)"
    ssl eval "$w/runs/$name" "$w/evals/$name" --data "$w/features" --split test --dcase-out
  done
fi
# The fixture smoke scores the result files of its own multi-ACCDOA eval as if they came
# from another system: the round trip through the DCASE format runs in CI.
[ -z "$dcase_results" ] && [ -n "$fixture" ] && dcase_results="$w/evals/${runs[2]%%:*}/dcase"
if run_stage 5 && [ -n "$dcase_results" ]; then
  announce 5 "score DCASE result files $dcase_results -> $w/evals/dcase_results"
  ssl eval --dcase-csv "$dcase_results" "$w/evals/dcase_results" --data "$w/features" \
    --split test --name dcase-results --force
fi
if run_stage 6; then announce 6 "report -> $w/report"
  evals=()
  for m in "${runs[@]}" dcase_results; do
    [ -f "$w/evals/${m%%:*}/manifest.json" ] && evals+=("$w/evals/${m%%:*}")
  done
  [ ${#evals[@]} -gt 0 ] || { echo "Stage 6: no eval in $w/evals: run stage 4" >&2; exit 1; }
  ssl report "${evals[@]}" --out "$w/report" --force
  announce 6 "done: $w/report/report.md"
fi
