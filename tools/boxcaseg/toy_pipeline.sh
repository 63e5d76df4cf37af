#!/usr/bin/env bash
# BoxCaseg end to end on the bundled toy data, as in configs/boxcaseg/README.md:
#   1. toy data (boxes-only train split) + toy salient images
#   2. stage 1: train and test the class-agnostic segmenter (mIoU*, IoU@50/75),
#      and score each of its heads on the test crops
#   3. stage 2: proxy masks for the train boxes (merge, agreement, quality
#      against the toy ground truth, throughput)
#   4. stage 3: train and test the Proxy Mask R-CNN (COCO segm/bbox AP)
# Usage: bash tools/boxcaseg/toy_pipeline.sh [WORK_ROOT]   (default work_dirs)
# Every stage is skipped when its output exists (delete it to rerun).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
WORK=${1:-work_dirs}
SEG=$WORK/boxcaseg_segmenter_r18_toy
PROXY=$WORK/proxy_mask-rcnn_r18_fpn_toy
PROXY_ANN=data/toy/annotations/instances_train_proxy.json

python tools/misc/make_toy_dataset.py --out data/toy --seed 0
python tools/misc/make_toy_dataset.py --salient --out data/toy_salient \
    --num-salient 300 --seed 0

if [ ! -f "$SEG/iter_2000.pth" ]; then
    mim train mmboxseg configs/boxcaseg/boxcaseg_segmenter_r18_toy.py \
        --work-dir "$SEG"
fi
mim test mmboxseg configs/boxcaseg/boxcaseg_segmenter_r18_toy.py \
    --checkpoint "$SEG/iter_2000.pth" --work-dir "$SEG/test"
python tools/analysis_tools/boxcaseg_heads.py \
    configs/boxcaseg/boxcaseg_segmenter_r18_toy.py "$SEG/iter_2000.pth" \
    --split test

if [ ! -f "$PROXY_ANN" ]; then
    python tools/boxcaseg/generate_proxy_masks.py \
        configs/boxcaseg/boxcaseg_segmenter_r18_toy.py "$SEG/iter_2000.pth" \
        data/toy/annotations/instances_train.json "$PROXY_ANN" \
        --img-prefix data/toy/images/train \
        --gt-ann data/toy/annotations/instances_train_with_masks.json \
        --drop-thr 0.95 0.5 0.75 0.85 0.9
fi

if [ ! -f "$PROXY/iter_1500.pth" ]; then
    mim train mmboxseg configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py \
        --work-dir "$PROXY"
fi
mim test mmboxseg configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py \
    --checkpoint "$PROXY/iter_1500.pth" --work-dir "$PROXY/test"
