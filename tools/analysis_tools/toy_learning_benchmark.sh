#!/usr/bin/env bash
# The toy learning benchmark of the config READMEs: train each config with
# the same schedule, evaluate it on the toy test split, and, when BoxInst is
# among them, evaluate BoxInst's own boxes pasted as masks (box baseline).
#   bash tools/analysis_tools/toy_learning_benchmark.sh [ITERS] [WORK_ROOT] \
#       [CONFIG ...]
# ITERS defaults to the configs' 1500; the LR drops at 80 % of ITERS. The
# configs default to CondInst (masks) and BoxInst (boxes); e.g. BoxTeacher:
#   bash tools/analysis_tools/toy_learning_benchmark.sh 1500 \
#       work_dirs/toy_learning_1500 configs/boxteacher/boxteacher_r18_fpn_toy.py
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ITERS=${1:-1500}
ROOT=${2:-work_dirs/toy_learning_${ITERS}}
shift $(( $# > 2 ? 2 : $# ))
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
    CONFIGS=(configs/condinst/condinst_r18_fpn_toy.py
             configs/boxinst/boxinst_r18_fpn_toy.py)
fi
SCHEDULE=(train_cfg.max_iters=$ITERS train_cfg.val_interval=$ITERS
          param_scheduler.1.end=$ITERS
          "param_scheduler.1.milestones=[$(( ITERS * 8 / 10 ))]")

python tools/misc/make_toy_dataset.py --out data/toy
for CONFIG in "${CONFIGS[@]}"; do
    NAME=$(basename "$CONFIG" .py)
    START=$(date +%s)
    python tools/train.py "$CONFIG" --work-dir "$ROOT/$NAME" \
        --cfg-options "${SCHEDULE[@]}"
    echo "[benchmark] $NAME trained in $(( $(date +%s) - START )) s"
    python tools/test.py "$CONFIG" "$ROOT/$NAME/iter_$ITERS.pth" \
        --work-dir "$ROOT/$NAME/test" --out "$ROOT/$NAME/test_preds.pkl"
    if [ "$NAME" = boxinst_r18_fpn_toy ]; then
        echo "[benchmark] box baseline (BoxInst boxes pasted as masks):"
        python tools/analysis_tools/eval_box_baseline.py "$CONFIG" \
            "$ROOT/$NAME/test_preds.pkl"
    fi
done
