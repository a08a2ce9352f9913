# Shared option parsing for the recipes: --stage N --stop-stage M --scale small|medium|paper
# --seeds "0 1 2" --data-root DIR --mic-root DIR --workdir DIR --jobs N. Source it after
# setting defaults.
stage=${stage:-1}
stop_stage=${stop_stage:-100}
scale=${scale:-small}
data_root=${data_root:-}
mic_root=${mic_root:-}
jobs=${jobs:-$(nproc 2>/dev/null || echo 1)}
# recipe_help: the calling recipe's header comment (its usage), without the leading "# ".
recipe_help() { sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --data-root) data_root=$2; shift 2 ;;
    --mic-root) mic_root=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    -h|--help) recipe_help; exit 0 ;;
    *) echo "$(basename "$(dirname "$0")")/$(basename "$0"): unknown option $1 (--help lists the options)" >&2
       exit 2 ;;
  esac
done
case "$scale" in small|medium|paper) ;; *) echo "--scale must be small, medium or paper" >&2; exit 2 ;; esac
# --jobs: a positive integer, at most the cores this shell may use (nproc follows the CPU
# affinity), as the stages cap their own workers: the recipes also run --jobs trainings at once.
case "$jobs" in ''|*[!0-9]*) echo "--jobs must be a positive integer (got '$jobs')" >&2; exit 2 ;; esac
jobs=$((10#$jobs))
[ "$jobs" -ge 1 ] || { echo "--jobs must be a positive integer (got $jobs)" >&2; exit 2; }
_cores=$(nproc 2>/dev/null || echo 1)
if [ "$jobs" -gt "$_cores" ]; then
  echo "note: --jobs $jobs: $_cores (the cores this process may use)" >&2
  jobs=$_cores
fi
# Seeds of each learned method: 3 at medium scale (mean ± std in the report), else one.
if [ "$scale" = medium ]; then seeds=${seeds:-0 1 2}; else seeds=${seeds:-0}; fi
# expand_runs MODEL...: set runs to "name:method:K:seed:extra" for every model
# "name:method:K:extra" and seed of $seeds (runs named NAME_sS unless the seeds are just "0").
expand_runs() {
  local m name method k extra s n
  runs=()
  for m in "$@"; do IFS=: read -r name method k extra <<< "$m"
    for s in $seeds; do
      n=$name; [ "$seeds" = 0 ] || n=${name}_s$s
      runs+=("$n:$method:$k:$s:$extra")
    done
  done
}
run_stage() { [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]; }
# Announce a stage step, with the seconds since the recipe started (a timing log for free).
announce() { echo "=== Stage $1: $2 [${SECONDS}s]" >&2; }

# `ssl` is the toolkit of the active virtualenv, else of the repository's .venv (made by
# install.sh), else an `ssl` on PATH: the recipes run as written after the README's install.
_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${VIRTUAL_ENV:-}" ] && "$VIRTUAL_ENV/bin/python" -c "import ssl_toolkit" 2>/dev/null; then
  SSL_PYTHON="$VIRTUAL_ENV/bin/python"
elif [ -x "$_repo/.venv/bin/python" ]; then
  SSL_PYTHON="$_repo/.venv/bin/python"
elif command -v ssl >/dev/null 2>&1; then
  SSL_PYTHON=""
else
  echo "recipes: the toolkit is not installed; run \`bash install.sh\` in $_repo first" >&2
  exit 2
fi
ssl() { if [ -n "$SSL_PYTHON" ]; then "$SSL_PYTHON" -m ssl_toolkit "$@"; else command ssl "$@"; fi; }
# broadband_sources DIR: event clips of broadband noise bursts for `ssl prep synth
# --sources-dir` (4 classes: white, pink, brown and amplitude-modulated noise; 8 clips of 1-3 s
# each at 16 kHz; seeded, so every recipe gets the same files).
broadband_sources() {
  "${SSL_PYTHON:-python3}" - "$1" <<'PY'
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

fs, rng, root = 16000, np.random.default_rng(0), Path(sys.argv[1])
for cls, tilt in (("white", 0.0), ("pink", -1.0), ("brown", -2.0), ("modulated", 0.0)):
    (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(8):
        n = int(fs * rng.uniform(1.0, 3.0))
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / fs), 50.0)
        x = np.fft.irfft(spec * f ** (tilt / 2), n)
        if cls == "modulated":  # a syllable-like 4 Hz envelope
            x *= 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / fs)
        ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.02 * fs))
        sf.write(root / cls / f"{cls}{i}.wav", (0.3 * x * ramp / np.abs(x).max()), fs)
PY
}
