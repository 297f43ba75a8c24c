#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment with the pinned OpenMMLab stack.
#
#   bash tools/setup_env.sh                  # the newest stack (torch 2.13, Python 3.11) in .venv
#   bash tools/setup_env.sh --stack oldest   # the oldest supported (torch 2.1.2, Python 3.8) in .venv-oldest
# Idempotent: returns in a second when nothing changed.
#
# Environment:
#   MMVIT_STACK   newest | oldest                 (default: newest; same as --stack)
#   MMVIT_VENV    where the venv lives            (default: <repo>/.venv, <repo>/.venv-oldest)
#   MMVIT_CACHE   where the built mmcv wheel is kept (default: ~/.cache/mmvit_ext)
#   PYTHON        the interpreter for the venv     (default: python3; oldest: pyenv's 3.8)
#
# Why the steps are as they are (each is a trap that was hit):
#   * PyPI has no mmcv 2.1.0 binary wheel; it compiles ~80 C++ files (12+ min on 2 cores). The built wheel is cached
#     under $MMVIT_CACHE keyed by mmcv, torch and Python versions, so the next install takes seconds.
#   * mmcv's setup.py imports torch and pkg_resources: build without isolation, with setuptools <82.
#   * openmim's openxlab dependency pins setuptools~=60.2 (breaks torch): install openmim without deps.
#   * torchvision for torch 2.13 is a CUDA build; it is installed without deps so it cannot move torch.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${MMVIT_STACK:-newest}
if [[ ${1:-} == --stack ]]; then STACK=${2:?--stack needs newest or oldest}; fi
CACHE=${MMVIT_CACHE:-$HOME/.cache/mmvit_ext}
case $STACK in
    newest)
        VENV=${MMVIT_VENV:-$ROOT/.venv}
        PYTHON=${PYTHON:-python3}
        CONSTRAINTS=$ROOT/requirements/constraints.txt
        BASE_TOOLS=(pip 'setuptools>=77.0.3,<82' wheel)
        EXTRA_REQUIREMENTS=(-r "$ROOT/requirements/deploy.txt" -r "$ROOT/requirements/docs.txt"
                            -r "$ROOT/requirements/lint.txt") ;;
    oldest)
        VENV=${MMVIT_VENV:-$ROOT/.venv-oldest}
        PYTHON=${PYTHON:-$(ls -d "$HOME"/.pyenv/versions/3.8.*/bin/python 2>/dev/null | tail -1)}
        [[ -x $PYTHON ]] || { echo "[setup_env] the oldest stack needs Python 3.8 (pyenv install 3.8.18, or PYTHON=...)" >&2; exit 1; }
        CONSTRAINTS=$ROOT/requirements/constraints-oldest.txt
        BASE_TOOLS=('pip<25' 'setuptools>=60,<70' wheel ninja)
        # no deployment extras: onnx/onnxscript and the exporters need a newer torch
        EXTRA_REQUIREMENTS=() ;;
    *) echo "[setup_env] unknown stack '$STACK' (newest or oldest)" >&2; exit 1 ;;
esac
STAMP=$VENV/.mmvit_ext_setup

say() { echo "[setup_env] $*" >&2; }

# Two stamps: the dependency stack (requirements, this script) and the package sources. The package
# is installed as a regular (non-editable) copy, because mim finds `mim train mmvit_ext` tools and
# configs only under site-packages/mmvit_ext/.mim; any change to the sources reinstalls that copy
# (a few seconds). Tests and tools import the checkout itself.
DEPS_STAMP=$VENV/.mmvit_ext_deps
deps_fingerprint=$(cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16)-$STACK
pkg_fingerprint=$(cd "$ROOT" && { find setup.py MANIFEST.in mmvit_ext configs tools model-index.yml README.md \
    -type f -not -path '*/.mim/*' -not -path '*/__pycache__/*' 2>/dev/null || true; } | sort | xargs cat | sha256sum | cut -c1-16)
PY=$VENV/bin/python
# The constraints file replaces any machine-wide one: it pins torch too.
pip() { PIP_CONSTRAINT="$CONSTRAINTS" "$PY" -m pip --disable-pip-version-check "$@"; }

install_package() {
    say "mmvit_ext (regular install: ships configs/ and tools/ as mmvit_ext/.mim for mim)"
    pip install -q --no-deps --no-build-isolation --force-reinstall "$ROOT"
    rm -rf "$ROOT/build" "$ROOT"/*.egg-info
    echo "$pkg_fingerprint" > "$STAMP"
}

if [[ -x $PY && -f $DEPS_STAMP && "$(cat "$DEPS_STAMP")" == "$deps_fingerprint" ]]; then
    if [[ -f $STAMP && "$(cat "$STAMP")" == "$pkg_fingerprint" ]]; then
        say "environment up to date: $VENV"
    else
        install_package
    fi
    exit 0
fi

if [[ ! -x $PY ]]; then
    say "creating venv at $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

say "stack: $STACK ($CONSTRAINTS)"
say "base tools (setuptools <82 keeps pkg_resources)"
pip install -q --upgrade "${BASE_TOOLS[@]}"

say "torch (pinned in requirements/constraints.txt)"
# The oldest stack's torch is PyPI's CUDA build: about 5 GB in the venv plus its 2.5 GB download in
# the temp folder. Say so before pip fails half-way with 'No space left on device'.
if ! "$PY" -c 'import torch' 2>/dev/null; then
    need_gb=$([[ $STACK == oldest ]] && echo 8 || echo 3)
    for where in "$VENV" "${TMPDIR:-/tmp}"; do
        free_gb=$(df -Pk "$where" | awk 'NR == 2 {print int($4 / 1048576)}')
        if (( free_gb < need_gb )); then
            say "ERROR: $where has ${free_gb} GB free; torch for the $STACK stack needs about ${need_gb} GB."
            say "Free some space (old clones, their .venv*, /tmp/pytest-of-\$USER) or set MMVIT_VENV / TMPDIR."
            exit 1
        fi
    done
fi
if ! pip install -q torch; then
    say "ERROR: could not install the pinned torch. On a machine without a local torch wheel, install the"
    say "CPU/CUDA build that fits it first, e.g. 'pip install torch==2.13.0 --index-url <your torch index>'."
    exit 1
fi

say "python dependencies"
pip install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
    "${EXTRA_REQUIREMENTS[@]}" -r "$ROOT/requirements/tools.txt" mmengine

if [[ $STACK == newest ]]; then
    # NATTEN, MSDA's optional CUDA backend (mmvit_ext/attention/msda/natten_backend.py): its tests run
    # the forward through NATTEN's flex backend on the CPU. PyPI has an sdist only; without CUDA it
    # builds no kernels (seconds), and it needs the torch above at build time. (No Python 3.8 release.)
    if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        # with CUDA the sdist compiles NATTEN's kernels for an hour; its prebuilt wheels are quicker
        say "natten skipped: with CUDA, install NATTEN's prebuilt wheel for your torch (natten.org)"
    else
        say "natten (optional MSDA backend; pinned in requirements/constraints.txt)"
        pip install -q --no-deps --no-build-isolation natten
    fi
fi

# ---- mmcv with compiled ops, built once per (mmcv, torch, python) and cached --------------------------------
MMCV_VERSION=$(sed -n 's/^mmcv==//p' "$CONSTRAINTS")
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
PY_TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEEL_DIR=$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PY_TAG
if "$PY" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    say "mmcv $MMCV_VERSION with ops already installed"
else
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        say "building mmcv $MMCV_VERSION with CPU ops for torch $TORCH_VERSION (about 12-15 minutes on 2 cores, once)"
        tmp=$(mktemp -d)
        # CFLAGS replaces Python's default flags: give the full set. -g0 saves a third of the compile time.
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS="-O3 -g0 -DNDEBUG -fwrapv" \
            pip wheel --no-deps --no-build-isolation --no-cache-dir -w "$tmp" "mmcv==$MMCV_VERSION"
        mkdir -p "$WHEEL_DIR"
        mv "$tmp"/mmcv-*.whl "$WHEEL_DIR"/
        rm -rf "$tmp"
    else
        say "using cached mmcv wheel from $WHEEL_DIR"
    fi
    pip install -q --no-deps "$WHEEL_DIR"/mmcv-*.whl
    # mmcv's own (light) dependencies
    pip install -q addict packaging Pillow pyyaml yapf opencv-python
fi

say "mmdet, mmseg, mmpretrain (their mmcv requirement is only under the 'mim' extra)"
pip install -q mmdet mmsegmentation mmpretrain
pip install -q --no-deps torchvision
# The CUDA torchvision next to the CPU torch fails on import ("operator torchvision::nms does not
# exist"): an import hook, started by a .pth line, declares the missing op schemas so that
# `import torchvision` and the frameworks' tools work without importing mmvit_ext first.
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$ROOT/mmvit_ext/utils/torchvision_shim.py" "$SITE/_mmvit_torchvision_hook.py"
echo "import _mmvit_torchvision_hook" > "$SITE/_mmvit_torchvision_hook.pth"
say "openmim without openxlab (pip then warns that opendatalab is missing: intended)"
pip install -q --no-deps openmim
pip install -q click colorama model-index pandas requests rich tabulate

install_package

"$PY" - <<'EOF'
import mmcv, mmcv.ops, mmdet, mmseg, mmpretrain, torch, numpy, torchvision, mmdet.models
print(f'[setup_env] torch {torch.__version__}, numpy {numpy.__version__}, mmcv {mmcv.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}')
EOF
echo "$deps_fingerprint" > "$DEPS_STAMP"
say "done: activate with 'source $VENV/bin/activate'"
