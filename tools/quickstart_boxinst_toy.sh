#!/usr/bin/env bash
# The main job: generate the toy data if missing, train BoxInst on it from
# boxes only, and evaluate it (bbox and segm AP) on the toy test split.
#   bash tools/quickstart_boxinst_toy.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONFIG=configs/boxinst/boxinst_r18_fpn_toy.py
WORK_DIR=${1:-work_dirs/boxinst_r18_fpn_toy}
START=$(date +%s)

python tools/misc/make_toy_dataset.py --out data/toy
python -m mim train mmboxseg "$CONFIG" --work-dir "$WORK_DIR"
CKPT="$WORK_DIR/$(basename "$(cat "$WORK_DIR/last_checkpoint")")"
python -m mim test mmboxseg "$CONFIG" --checkpoint "$CKPT" \
    --work-dir "$WORK_DIR/test"
echo "[quickstart] trained and evaluated $CONFIG in $(( $(date +%s) - START )) s;" \
     "checkpoint: $CKPT"
