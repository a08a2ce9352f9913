#!/usr/bin/env bash
# Issue 21's learning curve: rMCL (K = 5) and PIT trained for the SAME number of optimizer
# steps on 36, 144, 576 and 2304 unique RESYN-style MIC clips of 10 s (ov1 + ov2, 16 kHz,
# log-mel + GCC-PHAT, the learning check's small CRNN), with and without spatial
# augmentation, all scored on one held-out test set of 24 clips of other rooms and events,
# beside SRP-PHAT (true and estimated count) on the same clips. More unique data per step
# costs synthesis (200-330x real time), not steps. Writes curve.csv, curve.md and curve.png.
#
# Usage: recipes/learning_curve.sh [--workdir DIR] [--seeds "0 1 2"] [--stage N]
#          [--stop-stage M] [--jobs N] [--broadband]
#
#   --broadband   broadband noise-burst events (as recipes/heldout_check.sh --broadband)
#   --seeds       seeds of each training (default 0); the table gives mean ± std over them
#
# About 22 minutes on 2 CPU cores with one seed (measured: 16 trainings of about 55 s, SRP-PHAT
# 5 min); 5.9 GB of audio and features in all (4.3 GB for the largest set).
# Stages: 1 scenes, 2 features, 3 train, 4 eval, 5 baselines, 6 curve.
set -euo pipefail
broadband=()
rest=()
for a in "$@"; do if [ "$a" = --broadband ]; then broadband=(x); else rest+=("$a"); fi; done
set -- "${rest[@]+"${rest[@]}"}"
workdir=${workdir:-exp/learning_curve${broadband[*]:+_broadband}}
source "$(dirname "$0")/common.sh"
w=$workdir
mkdir -p "$w"
sizes="36 144 576 2304"
steps=1125  # 25 epochs of the smallest set (36 clips x 20 chunks / batch 16)
# The small recipes' CRNN for exactly $steps steps, whatever the set's size (no early stop).
train=(--config "$(dirname "$0")/conf/train-small.toml" --epochs 1000 --patience 1000
       --max-steps "$steps")
sources=()
if [ ${#broadband[@]} -gt 0 ]; then sources=(--sources-dir "$w/sources"); broadband_sources "$w/sources"; fi
synth() {  # synth OUT N_CLIPS TRAIN VAL TEST SEED: RESYN-style MIC scenes in these shares
  local toml="$1.toml"
  printf '[synth]\nsplit_fractions = [%s, %s, %s]\n' "$3" "$4" "$5" > "$toml"
  ssl prep synth "$1" --preset resyn --format mic --fs 16000 --clips "$2" --clip-seconds 10 \
    --subsets ov1,ov2 --seed "$6" --config "$toml" --jobs "$jobs" \
    "${sources[@]+"${sources[@]}"}"
}
expand_runs "rmcl5:rmcl:5:z" "rmcl5_noaug:rmcl:5:none" "pit:pit:2:z" "pit_noaug:pit:2:none"

if run_stage 1; then
  announce 1 "held-out test scenes (24 clips, seed 99) -> $w/test"
  synth "$w/test" 24 0 0 1 99
  for n in $sizes; do announce 1 "$n training clips (+ 12 val, seed 7) -> $w/scenes_$n"
    synth "$w/scenes_$n" $((n + 12)) "$(awk "BEGIN{printf \"%.9f\", $n/($n+12)}")" \
      "$(awk "BEGIN{printf \"%.9f\", 12/($n+12)}")" 0 7
  done
fi
if run_stage 2; then
  for d in test $(for n in $sizes; do echo "scenes_$n"; done); do
    announce 2 "log-mel + GCC-PHAT features -> $w/features_$d"
    ssl prep features "$w/$d" "$w/features_$d" --type logmel --jobs "$jobs"
  done
fi
if run_stage 3; then
  for n in $sizes; do for r in "${runs[@]}"; do IFS=: read -r name method k seed aug <<< "$r"
    announce 3 "train $name on $n clips, $steps steps -> $w/runs/${name}_$n"
    ssl train "$w/features_scenes_$n" "$w/runs/${name}_$n" --method "$method" -K "$k" \
      --seed "$seed" --augment "$aug" "${train[@]}"
  done; done
fi
if run_stage 4; then
  for n in $sizes; do for r in "${runs[@]}"; do name=${r%%:*}
    announce 4 "eval ${name}_$n on the held-out test set -> $w/evals/${name}_$n"
    ssl eval "$w/runs/${name}_$n" "$w/evals/${name}_$n" --data "$w/features_test" --split test
  done; done
fi
if run_stage 5; then
  for c in known estimate; do announce 5 "SRP-PHAT, --n-sources $c -> $w/evals/srp_$c"
    ssl baseline "$w/test" "$w/evals/srp_$c" --data "$w/features_test" --split test \
      --method srp --n-sources "$c"
  done
fi
if run_stage 6; then announce 6 "learning curve -> $w/curve.{csv,md,png}"
  "${SSL_PYTHON:-python3}" - "$w" <<'PY'
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

w = Path(sys.argv[1])
rows = []
for ev in sorted((w / "evals").iterdir()):
    if not (ev / "metrics.json").is_file():
        continue
    o = json.loads((ev / "metrics.json").read_text())["overall"]
    m = re.fullmatch(r"(.+?)(?:_s(\d+))?_(\d+)", ev.name)
    name, clips = (m.group(1), int(m.group(3))) if m else (ev.name, None)
    rows.append({"method": name, "clips": clips, "oracle_deg": o["oracle_deg"],
                 "emd_deg": o["emd_deg"], "F20": o["F20"], "LE_CD_deg": o["LE_CD_deg"]})
df = pd.DataFrame(rows)
agg = df.groupby(["method", "clips"], dropna=False).agg(["mean", "std", "count"]).reset_index()
agg.columns = ["_".join(c).strip("_") for c in agg.columns]
agg.to_csv(w / "curve.csv", index=False)
fmt = lambda r, k: (f"{r[k + '_mean']:.2f}" if r[k + "_count"] < 2 or pd.isna(r[k + "_std"])
                    else f"{r[k + '_mean']:.2f} ± {r[k + '_std']:.2f}")
lines = ["| method | training clips | oracle (deg) | EMD (deg) | F20 | LE_CD (deg) |",
         "|---|---|---|---|---|---|"]
for _, r in agg.iterrows():
    clips = "-" if pd.isna(r["clips"]) else int(r["clips"])
    lines.append(f"| {r['method']} | {clips} | " + " | ".join(
        fmt(r, k) for k in ("oracle_deg", "emd_deg", "F20", "LE_CD_deg")) + " |")
(w / "curve.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, k, label in zip(axes, ("oracle_deg", "emd_deg", "F20"), ("oracle (deg)", "EMD (deg)", "F20")):
    for name, g in agg[agg["clips"].notna()].groupby("method"):
        ax.errorbar(g["clips"], g[k + "_mean"], yerr=g[k + "_std"].fillna(0), marker="o",
                    label=name, linestyle="--" if name.endswith("noaug") else "-")
    for _, r in agg[agg["clips"].isna()].iterrows():
        ax.axhline(r[k + "_mean"], color="gray", linestyle=":" if "estimate" in r["method"]
                   else "-.", label=r["method"])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("unique training clips (same optimizer steps)")
    ax.set_ylabel(label)
axes[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(w / "curve.png", dpi=120)
PY
fi
