#!/usr/bin/env bash
# The main job on the built-in small dataset, from a fresh machine:
#   set up the environment -> generate the COCO-format small dataset -> train Mask R-CNN with a
#   DilateFormer backbone on CPU (a few minutes) -> evaluate the last checkpoint with
#   tools/test.py (COCO bbox and segm mAP) -> print what it learned.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tools/setup_env.sh
PY=${MMVIT_VENV:-$ROOT/.venv}/bin/python
CONFIG=configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py
WORK_DIR=${WORK_DIR:-work_dirs/demo_mask-rcnn_dilateformer}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

[ -f data/small/small_coco/annotations/instances_train.json ] || \
    "$PY" tools/misc/make_small_datasets.py data/small --only coco
rm -rf "$WORK_DIR"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
"$PY" tools/test.py "$CONFIG" "$WORK_DIR/epoch_16.pth" --work-dir "$WORK_DIR/test"
"$PY" tools/misc/summarize_run.py "$WORK_DIR"
