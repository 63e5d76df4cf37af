#!/usr/bin/env bash
# The toy learning benchmark of configs/boxinst/README.md: train CondInst
# (masks) and BoxInst (boxes) with the same schedule, evaluate both on the
# toy test split, and evaluate BoxInst's own boxes pasted as masks (the box
# baseline).
#   bash tools/analysis_tools/toy_learning_benchmark.sh [ITERS] [WORK_ROOT]
# ITERS defaults to the configs' 1500; the LR drops at 80 % of ITERS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ITERS=${1:-1500}
ROOT=${2:-work_dirs/toy_learning_${ITERS}}
SCHEDULE=(train_cfg.max_iters=$ITERS train_cfg.val_interval=$ITERS
          param_scheduler.1.end=$ITERS
          "param_scheduler.1.milestones=[$(( ITERS * 8 / 10 ))]")

python tools/misc/make_toy_dataset.py --out data/toy
for CONFIG in configs/condinst/condinst_r18_fpn_toy.py \
              configs/boxinst/boxinst_r18_fpn_toy.py; do
    NAME=$(basename "$CONFIG" .py)
    START=$(date +%s)
    python tools/train.py "$CONFIG" --work-dir "$ROOT/$NAME" \
        --cfg-options "${SCHEDULE[@]}"
    echo "[benchmark] $NAME trained in $(( $(date +%s) - START )) s"
    python tools/test.py "$CONFIG" "$ROOT/$NAME/iter_$ITERS.pth" \
        --work-dir "$ROOT/$NAME/test" --out "$ROOT/$NAME/test_preds.pkl"
done
echo "[benchmark] box baseline (BoxInst boxes pasted as masks):"
python tools/analysis_tools/eval_box_baseline.py \
    configs/boxinst/boxinst_r18_fpn_toy.py \
    "$ROOT/boxinst_r18_fpn_toy/test_preds.pkl"
