#!/usr/bin/env bash
# The rMCL paper's comparison on ANSYN-style (anechoic) scenes: the RESYN recipe with preset
# ansyn (same options, stages and outputs; see recipes/resyn/run.sh). Default workdir exp/ansyn.
set -euo pipefail
preset=ansyn exec "$(dirname "$0")/../resyn/run.sh" "$@"
