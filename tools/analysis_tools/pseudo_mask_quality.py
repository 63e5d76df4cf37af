# Copyright (c) mmboxseg contributors. All rights reserved.
"""Quality of a BoxTeacher checkpoint's pseudo masks on training images.

    python tools/analysis_tools/pseudo_mask_quality.py CONFIG CHECKPOINT \
        [--ann-file annotations/instances_train_with_masks.json] \
        [--num-images 64]

Runs the teacher on the first ``num-images`` training images (train
pipeline, flip off, the masks loaded only for this measurement: they never
reach a loss), assigns pseudo masks to the boxes exactly as in training, and
compares them with the ground-truth masks on the stride-4 grid. Prints one
JSON line: the share of boxes that got a pseudo mask, the mean IoU of those
pseudo masks with the true masks, the mean share of its box a pseudo mask
fills and the same for the true masks (a filled box scores about that IoU).
"""
import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument(
        '--ann-file',
        default='annotations/instances_train_with_masks.json',
        help='training annotations with masks, relative to data_root')
    parser.add_argument('--num-images', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=8)
    return parser.parse_args()


def instance_scores(pseudo, truth, box_masks):
    """IoU with the truth and box fill of pseudo and true masks, per
    instance (``[G, H, W]`` bool each)."""
    inter = (pseudo & truth).flatten(1).sum(1).float()
    union = (pseudo | truth).flatten(1).sum(1).float().clamp(min=1)
    box_area = box_masks.flatten(1).sum(1).float().clamp(min=1)
    return (inter / union, pseudo.flatten(1).sum(1) / box_area,
            truth.flatten(1).sum(1) / box_area)


def measure(cfg, checkpoint, ann_file, num_images, batch_size):
    from mmboxseg.datasets.transforms import eval_mask_pipeline
    from mmboxseg.registry import DATASETS, MODELS
    from mmboxseg.utils import adopt_mmboxseg_scope
    cfg = adopt_mmboxseg_scope(cfg)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.ann_file = ann_file
    # the true masks ride as eval_masks: the model never sees them
    ds_cfg.pipeline = eval_mask_pipeline(ds_cfg.pipeline)
    for t in ds_cfg.pipeline:
        if t['type'] == 'RandomFlip':
            t['prob'] = 0.0
    dataset = DATASETS.build(ds_cfg)
    model = MODELS.build(cfg.model)
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    model.load_state_dict(state.get('state_dict', state))
    model.train()
    stride = model.mask_head.mask_out_stride
    ious, fills, true_fills, num_gts = [], [], [], 0
    num_images = min(num_images, len(dataset))
    for start in range(0, num_images, batch_size):
        items = [
            dataset[i]
            for i in range(start, min(start + batch_size, num_images))
        ]
        data = model.data_preprocessor(pseudo_collate(items), True)
        t_in, t_samples, _, s_samples = model.split_views(
            data['inputs'], data['data_samples'])
        with torch.no_grad():
            model.add_pseudo_masks(t_in, t_samples, s_samples)
        for sample in s_samples:
            gt = sample.gt_instances
            h, w = gt.pseudo_masks.shape[-2:]
            truth = gt.eval_masks.to_tensor(torch.bool, 'cpu')
            truth = truth[:, stride // 2::stride, stride // 2::stride]
            truth = F.pad(truth,
                          (0, w - truth.shape[-1], 0, h - truth.shape[-2]))
            assigned = gt.pseudo_scores > 0
            num_gts += len(gt)
            iou, fill, true_fill = instance_scores(
                gt.pseudo_masks[assigned].cpu(), truth[assigned],
                gt.box_masks[assigned].cpu())
            ious += iou.tolist()
            fills += fill.tolist()
            true_fills += true_fill.tolist()
    return dict(
        images=num_images,
        boxes=num_gts,
        assigned=round(len(ious) / max(num_gts, 1), 3),
        pseudo_miou=round(float(np.mean(ious)), 3) if ious else None,
        pseudo_box_fill=round(float(np.mean(fills)), 3) if fills else None,
        true_box_fill=round(float(np.mean(true_fills)), 3)
        if true_fills else None)


def main():
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    args = parse_args()
    result = measure(
        Config.fromfile(args.config), args.checkpoint, args.ann_file,
        args.num_images, args.batch_size)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
