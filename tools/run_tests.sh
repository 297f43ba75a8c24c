#!/usr/bin/env bash
# Set up both supported stacks, then run the tests on each (what CI runs):
#   newest: torch 2.13, Python 3.11 (.venv)         -> the full default suite
#   oldest: torch 2.1.2, Python 3.8 (.venv-oldest)  -> the subset in tests/oldest_stack.txt
# and, once, lint-imports: the layers and import contracts of .importlinter (a broken one fails).
# First run on a new machine: ~15 min of installs (mmcv compiles once per stack, then is cached
# in ~/.cache/mmvit_ext); later runs start testing within seconds.
#
#   bash tools/run_tests.sh                 # both stacks
#   MMVIT_STACKS=newest bash tools/run_tests.sh -k msda   # one stack; extra arguments go to pytest
#
# Two pytest workers (pytest-xdist), one thread each: a third of the run is tool subprocesses
# importing torch, mmengine and mmdet on one core, which the second worker overlaps.
# MMVIT_TEST_WORKERS=0 runs everything in one process (two threads).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STACKS=${MMVIT_STACKS:-newest oldest}
WORKERS=${MMVIT_TEST_WORKERS:-2}
if [ "$WORKERS" = 0 ]; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    PARALLEL=()
else
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    PARALLEL=(-n "$WORKERS")
fi
for stack in $STACKS; do
    bash tools/setup_env.sh --stack "$stack"
done
status=0
for stack in $STACKS; do
    case $stack in
        newest) venv=${MMVIT_VENV:-$ROOT/.venv}; selection=() ;;
        oldest) venv=$ROOT/.venv-oldest
                mapfile -t selection < <(grep -v '^\s*#' tests/oldest_stack.txt | grep -v '^\s*$') ;;
    esac
    echo "[run_tests] $stack stack: $("$venv/bin/python" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}")')"
    if [ "$stack" = newest ]; then  # the architecture's contracts (.importlinter): static, once
        "$venv/bin/lint-imports" --no-cache || status=$?
    fi
    "$venv/bin/python" -m pytest "${PARALLEL[@]}" "${selection[@]}" "$@" || status=$?
done
exit $status
