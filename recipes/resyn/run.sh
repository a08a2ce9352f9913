#!/usr/bin/env bash
# The rMCL paper's comparison on RESYN-style (reverberant) synthesized scenes, mic format.
# Usage: recipes/resyn/run.sh [--scale small|paper] [--stage N] [--stop-stage M]
#        [--data-root DIR (imported originals)] [--workdir DIR]
set -euo pipefail
preset=${preset:-resyn}
workdir=${workdir:-exp/$preset}
source "$(dirname "$0")/../common.sh"
if [ "$scale" = small ]; then clips=40; secs=10; epochs=5; else clips=400; secs=30; epochs=100; fi
w=$workdir

if run_stage 1; then announce 1 "scenes -> $w/scenes"
  if [ -n "$data_root" ]; then ssl prep import "$data_root" "$w/scenes" --layout tut2018
  else ssl prep synth "$w/scenes" --preset "$preset" --format mic --clips $clips \
         --clip-seconds $secs --subsets ov1,ov2,ov3; fi
fi
if run_stage 2; then announce 2 "features -> $w/features"
  ssl prep features "$w/scenes" "$w/features"
fi
# name:method:K:extra options
models=(pit:pit:3: wta1:wta:1: wta5:wta:5: ewta:wta-relaxed:5: topn:wta-top-n:5:
        rmcl3:rmcl:3: rmcl5:rmcl:5: rmcl10:rmcl:10: rmcl20:rmcl:20: "rmclstar:rmcl:5:--config $w/rmclstar.toml"
        amcl:amcl:5: ie:ie:5:)
if run_stage 3; then
  printf '[train]\nnegatives = 1\n' > "$w/rmclstar.toml"  # rMCL*: one negative per frame
  for m in "${models[@]}"; do IFS=: read -r name method k extra <<< "$m"
    announce 3 "train $name ($method, K = $k) -> $w/runs/$name"
    # shellcheck disable=SC2086
    ssl train "$w/features" "$w/runs/$name" --method "$method" -K "$k" --epochs $epochs $extra
  done
fi
if run_stage 4; then
  for m in "${models[@]}"; do name=${m%%:*}
    announce 4 "eval $name -> $w/evals/$name"
    ssl eval "$w/runs/$name" "$w/evals/$name" --data "$w/features" --split test
  done
fi
if run_stage 5; then
  for b in srp music; do announce 5 "baseline $b -> $w/evals/$b"
    ssl baseline "$w/scenes" "$w/evals/$b" --data "$w/features" --method "$b"
  done
fi
if run_stage 6; then announce 6 "report -> $w/report"
  ssl report "$w"/evals/* --out "$w/report" --force
fi
