#!/usr/bin/env bash
# Install ssl-toolkit into ./.venv without ever replacing a torch you already have.
#
#   bash install.sh            # the toolkit
#   bash install.sh --test     # plus the test tools (pytest, ruff)
#   bash install.sh --onnx     # plus ONNX export (onnx, onnxruntime)
#
# The venv sees the system site-packages, so a GPU build of torch that is
# already installed is reused. When no torch is importable, the CPU build is
# installed (a local wheel if pip's find-links has one, else the PyTorch CPU
# index), never the multi-GB CUDA build that a bare `pip install torch` pulls.
set -euo pipefail
cd "$(dirname "$0")"
extras=()
for arg in "$@"; do
  case "$arg" in
    --test) extras+=(test) ;;  # pytest, ruff and the ONNX extra (its tests run too)
    --onnx) extras+=(onnx) ;;
    *) echo "install.sh: unknown option $arg (use --test, --onnx)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "install.sh: no torch found; installing the CPU build" >&2
  "$VPY" -m pip install -q "torch==2.13.0" 2>/dev/null \
    || "$VPY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
spec="."
if [ ${#extras[@]} -gt 0 ]; then
  spec=".[$(IFS=,; echo "${extras[*]}")]"
fi
"$VPY" -m pip install -q -e "$spec"
echo "install.sh: ready: .venv/bin/ssl ($("$VPY" -c 'import torch; print("torch", torch.__version__)'))" >&2
