#!/usr/bin/env bash
# Set up the environment (first run on a new machine: ~15-20 min, mostly compiling mmcv once),
# then run the default test suite. Extra arguments go to pytest, e.g. `-m slow` or `-k msda`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tools/setup_env.sh
# Two pytest workers (pytest-xdist), one thread each: a third of the default run is tool
# subprocesses importing torch, mmengine and mmdet on one core, which the second worker overlaps.
# MMVIT_TEST_WORKERS=0 runs everything in one process (two threads).
WORKERS=${MMVIT_TEST_WORKERS:-2}
if [ "$WORKERS" = 0 ]; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
else
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
exec "${MMVIT_VENV:-$ROOT/.venv}/bin/python" -m pytest -n "$WORKERS" "$@"
