#!/usr/bin/env bash
# PCK@alpha on the toy correspondence pairs (configs/discobox/README.md):
# a trained DiscoBox toy checkpoint against the same network at
# initialisation (no ImageNet weights: the toy backbone starts from
# scratch).
#   bash tools/analysis_tools/toy_correspondence_benchmark.sh CHECKPOINT \
#       [WORK_ROOT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CKPT=$1
ROOT=${2:-work_dirs/toy_pck}
CONFIG=configs/discobox/discobox_solov2_r18_fpn_toy_pck.py

python tools/misc/make_toy_correspondence_pairs.py --out data/toy_pairs
python tools/analysis_tools/init_checkpoint.py \
    configs/discobox/discobox_solov2_r18_fpn_toy.py "$ROOT/init.pth"
for NAME in trained init; do
    if [ "$NAME" = trained ]; then WEIGHTS=$CKPT; else WEIGHTS=$ROOT/init.pth; fi
    echo "[benchmark] PCK of the $NAME network ($WEIGHTS)"
    python tools/test.py "$CONFIG" "$WEIGHTS" --work-dir "$ROOT/$NAME"
done
