#!/usr/bin/env bash
# Does rMCL learn? On a small RESYN-style set synthesized on a CPU, rMCL (K=5)
# must reach a validation oracle error well below K random directions and below
# PIT trained with the same budget.
#
#   recipes/learning_check.sh [--stage N] [--stop-stage M] [--work DIR]
set -euo pipefail

stage=1
stop_stage=5
work=exp/learning_check
ssl=${SSL:-ssl}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
mkdir -p "$work"
# The same small model and budget for every method (about 10 min each on 2 CPU cores).
cat > "$work/train.toml" <<'TOML'
[train]
channels = [32, 32, 32]
pools = [4, 4, 2]
gru_layers = 2
gru_units = 64
epochs = 30
batch_size = 16
lr = 3e-3
patience = 30
TOML

run() { [[ $stage -le $1 && $stop_stage -ge $1 ]]; }

if run 1; then
  echo "Stage 1: synthesize RESYN-style scenes -> $work/scenes"
  $ssl prep synth "$work/scenes" --preset resyn --fs 16000 --clips 45 --clip-seconds 15 \
    --seed 0 --jobs 2
fi
if run 2; then
  echo "Stage 2: log-mel + intensity features -> $work/features"
  $ssl prep features "$work/scenes" "$work/features" --type logmel
fi
if run 3; then
  echo "Stage 3: train rMCL, K=5 -> $work/rmcl"
  $ssl train "$work/features" "$work/rmcl" --method rmcl -K 5 --seed 0 --config "$work/train.toml"
fi
if run 4; then
  echo "Stage 4: train PIT (one slot per source) -> $work/pit"
  $ssl train "$work/features" "$work/pit" --method pit --seed 0 --config "$work/train.toml"
fi
if run 5; then
  echo "Stage 5: validation oracle error vs K random directions"
  python -m ssl_toolkit.training.check "$work/features" "$work/rmcl" "$work/pit"
fi
