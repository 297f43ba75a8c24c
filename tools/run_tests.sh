#!/usr/bin/env bash
# Set up the environment (first run on a new machine: ~15-20 min, mostly compiling mmcv once),
# then run the default test suite. Extra arguments go to pytest, e.g. `-m slow` or `-k msda`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tools/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "${MMVIT_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
