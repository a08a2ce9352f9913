#!/usr/bin/env bash
# The rMCL paper's comparison (Letzelter et al., NeurIPS 2023) on RESYN-style reverberant
# scenes: PIT, WTA-1, WTA-5, epsilon-WTA, top-n WTA, rMCL with K = 3, 5, 10, 20, rMCL* (one
# drawn negative per frame), annealed MCL, IE, and the classical SRP-PHAT and MUSIC, in one
# `ssl report` table. recipes/ansyn/run.sh runs it with preset=ansyn (anechoic scenes).
#
# Usage: recipes/resyn/run.sh [--scale small|medium|paper] [--seeds "0 1 2"] [--stage N]
#          [--stop-stage M] [--workdir DIR] [--jobs N] [--data-root DIR [--mic-root DIR]]
#
#   --scale small   (default) about 20 min on 2 CPU cores: 16 kHz, 60 clips of 10 s, log-mel
#                   features (STFT ones train 3-4x slower on a CPU), a small CRNN
#                   (recipes/conf/train-small.toml), 20 epochs, a 10-degree search grid for the
#                   baselines (peaks are refined to 0.1 degree).
#   --scale medium  240 clips of 10 s (4x small), PIT, WTA-5, rMCL, rMCL*, aMCL and IE with
#                   3 seeds each (runs NAME_s0..s2; the report adds mean +- std over seeds),
#                   30 epochs (recipes/conf/train-medium.toml). About 1 h 45 min on 2 CPU
#                   cores with --jobs 2 (estimated from the committed run, where ANSYN and
#                   RESYN shared the cores: 15 runs in 96 min and 30 min per IE seed, each
#                   recipe on one core; IE trains its 5 members one after the other).
#   --scale paper   the paper's sizes: 44.1 kHz, 900 clips of 30 s (300 per overlap subset, as
#                   one TUT2018 split), STFT magnitude + phase, the default CRNN, 100 epochs
#                   (recipes/conf/train-paper.toml)
#                   (early stopping after 10 without progress). About 19 GB of audio (FOA and
#                   MIC) and 22 GB of features; train on a GPU.
#   --jobs N        worker processes of synth and features, and (small and medium scale)
#                   trainings and evals run at once, one thread each (default: all cores).
#   --data-root DIR import the original ANSYN/RESYN (TUT2018 layout: wav_ovN_splitK_*/,
#                   desc_ovN_splitK/) instead of synthesizing. The originals are FOA only, and
#                   the classical baselines need microphone-array audio: give --mic-root DIR,
#                   the same clips in MIC format (same layout and file names, DCASE
#                   tetrahedral array), or stages 2 and 6 are skipped with a message.
#
# The learned methods train on FOA scenes, as in the paper (the synth default). The classical
# baselines need MIC audio: stage 2 synthesizes the MIC twin of the same scenes (same seed and
# options, --format mic: the event plan does not depend on the format, so clips and labels
# are identical), and stage 6 scores it on exactly the frames of the learned models
# (`ssl baseline TWIN --data FOA_FEATURES`, which refuses a twin whose labels differ).
#
# Stages: 1 FOA scenes, 2 MIC twin, 3 features, 4 train, 5 eval, 6 baselines, 7 report.
# Every stage reuses an output built with the same config, so a rerun skips finished work.
set -euo pipefail
preset=${preset:-resyn}
workdir=${workdir:-exp/$preset}
source "$(dirname "$0")/../common.sh"
w=$workdir
mkdir -p "$w"
# Small scale: one intra-op thread per process (OMP_NUM_THREADS overrides). On a busy 2-core
# machine, spinning OpenMP threads slowed the small CRNN's training to 6-40 chunks/s, against
# 100 chunks/s with one thread.
[ "$scale" != paper ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Trainings and evals (stages 4, 5): --jobs of them at once at small and medium scale (one
# thread each, so one per core), one at a time at paper scale (one GPU). Results do not
# depend on it. With several at once each writes its output to $w/logs/<step>.log.
par=1; [ "$scale" != paper ] && par=$jobs
pids=()
launch() {  # launch NAME CMD...: run CMD, at most $par at once; a failure stops the recipe
  local name=$1; shift
  if [ "$par" -le 1 ]; then "$@"; return; fi
  if [ ${#pids[@]} -ge "$par" ]; then wait_first; fi
  mkdir -p "$w/logs"
  "$@" > "$w/logs/$name.log" 2>&1 &
  pids+=("$!:$name")
}
wait_first() {
  local p=${pids[0]%%:*} name=${pids[0]#*:}
  pids=("${pids[@]:1}")
  if ! wait "$p"; then
    tail -n 5 "$w/logs/$name.log" >&2
    echo "recipe: $name failed (log: $w/logs/$name.log)" >&2
    exit 1
  fi
}
drain() { while [ ${#pids[@]} -gt 0 ]; do wait_first; done; }
trap 'for p in "${pids[@]}"; do kill "${p%%:*}" 2>/dev/null; done' EXIT

synth=(--preset "$preset" --subsets ov1,ov2,ov3 --seed 0 --jobs "$jobs")
conf=$(cd "$(dirname "$0")/../conf" && pwd)
if [ "$scale" = small ]; then
  synth+=(--fs 16000 --n-clips 60 --clip-seconds 10); feature_type=logmel; grid=(--grid-deg 10)
elif [ "$scale" = medium ]; then
  synth+=(--fs 16000 --n-clips 240 --clip-seconds 10); feature_type=logmel; grid=(--grid-deg 10)
else
  synth+=(--fs 44100 --n-clips 900 --clip-seconds 30); feature_type=stft; grid=()
fi
train_toml="$conf/train-$scale.toml"  # committed beside the recipes
mic=yes; [ -n "$data_root" ] && [ -z "$mic_root" ] && mic=
no_mic="the original data are FOA only; give --mic-root DIR (MIC-format clips) for SRP-PHAT/MUSIC"

if run_stage 1; then announce 1 "FOA scenes -> $w/scenes"
  if [ -n "$data_root" ]; then ssl prep import "$data_root" "$w/scenes" --layout tut2018
  else ssl prep synth "$w/scenes" "${synth[@]}"; fi
fi
if run_stage 2; then announce 2 "MIC twin of the scenes -> $w/scenes_mic"
  if [ -z "$mic" ]; then echo "Stage 2 skipped: $no_mic" >&2
  elif [ -n "$data_root" ]; then ssl prep import "$mic_root" "$w/scenes_mic" --format mic
  else ssl prep synth "$w/scenes_mic" "${synth[@]}" --format mic; fi
fi
if run_stage 3; then announce 3 "$feature_type features -> $w/features"
  ssl prep features "$w/scenes" "$w/features" --type "$feature_type" --jobs "$jobs"
fi
# name:method:K:extra options (rMCL*: one negative hypothesis drawn per frame)
models=(pit:pit:3: wta1:wta:1: wta5:wta:5: ewta:wta-relaxed:5: topn:wta-top-n:5:
        rmcl3:rmcl:3: rmcl5:rmcl:5: rmcl10:rmcl:10: rmcl20:rmcl:20:
        "rmclstar:rmcl:5:--negatives 1" amcl:amcl:5: ie:ie:5:)
# Medium scale: the methods the paper's claims are about, each with 3 seeds (about an hour).
[ "$scale" = medium ] && models=(pit:pit:3: wta5:wta:5: rmcl5:rmcl:5:
                                 "rmclstar:rmcl:5:--negatives 1" amcl:amcl:5: ie:ie:5:)
# Every run trains the same number of epochs of the same batches (IE: each member does),
# so budgets are equal in optimizer steps; early stopping is off (patience = epochs).
expand_runs "${models[@]}"  # runs: name:method:K:seed:extra options
if run_stage 4; then
  for r in "${runs[@]}"; do IFS=: read -r name method k s extra <<< "$r"
    announce 4 "train $name ($method, K = $k, seed $s) -> $w/runs/$name"
    # shellcheck disable=SC2086  # $extra is a list of options
    launch "train_$name" ssl train "$w/features" "$w/runs/$name" --method "$method" -K "$k" \
      --seed "$s" --config "$train_toml" $extra
  done
  drain
fi
if run_stage 5; then
  for r in "${runs[@]}"; do name=${r%%:*}
    announce 5 "eval $name -> $w/evals/$name"
    launch "eval_$name" ssl eval "$w/runs/$name" "$w/evals/$name" --data "$w/features" \
      --split test
  done
  drain
fi
baselines=(srp music)
if run_stage 6 && [ -z "$mic" ]; then echo "Stage 6 skipped: $no_mic" >&2
elif run_stage 6; then
  for b in "${baselines[@]}"; do announce 6 "baseline $b on the MIC twin -> $w/evals/$b"
    ssl baseline "$w/scenes_mic" "$w/evals/$b" --data "$w/features" --method "$b" --split test \
      "${grid[@]}"
  done
fi
if run_stage 7; then announce 7 "report -> $w/report"
  evals=()
  for m in "${runs[@]}" "${baselines[@]}"; do
    [ -f "$w/evals/${m%%:*}/manifest.json" ] && evals+=("$w/evals/${m%%:*}")
  done
  [ ${#evals[@]} -gt 0 ] || { echo "Stage 7: no eval in $w/evals: run stages 5 and 6" >&2; exit 1; }
  ssl report "${evals[@]}" --out "$w/report" --force
  announce 7 "done: $w/report/report.md"
fi
