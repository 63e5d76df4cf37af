# Copyright (c) mmboxseg contributors. All rights reserved.
"""Crop metrics of each BoxCaseg head, beside the box baseline.

Evaluates a trained segmenter's weak, salient, transferred and fused heads
(BoxCaseg Table 4's columns, at test time: the heads of one trained model,
not models trained without a head) and the box itself as mask, with the
metric of ``mim test`` (IoU@50, IoU@75, mIoU*, mIoU in percent) on the
config's val or test crops. Every head's map is min-max normalised per crop
and thresholded at the model's ``mask_thr``, as the fused head is at test
time.

Example::

    python tools/analysis_tools/boxcaseg_heads.py \\
        configs/boxcaseg/boxcaseg_segmenter_r18_toy.py \\
        work_dirs/boxcaseg_segmenter_r18_toy/iter_2000.pth --split test
"""
import argparse

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner, load_checkpoint

HEADS = ('weak', 'salient', 'transferred', 'fused')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Crop metrics of each BoxCaseg head and of the box')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--split', choices=['val', 'test'], default='test')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def evaluate_heads(model, loader):
    """Per-head crop metrics; returns ``{name: summary}``."""
    from mmboxseg.evaluation.metrics import crop_iou_summary, mask_iou
    ious = {name: [] for name in ('box', ) + HEADS}
    labels = []
    model.eval()
    with torch.no_grad():
        for data in loader:
            data = model.data_preprocessor(data, False)
            logits = model.head_logits(data['inputs'])
            for i, sample in enumerate(data['data_samples']):
                gt = np.asarray(sample.metainfo['gt_crop_mask'])
                h, w = gt.shape
                labels.append(int(sample.metainfo['bbox_label']))
                ious['box'].append(mask_iou(np.ones_like(gt), gt))
                for name in HEADS:
                    # the fused head exactly as BoxCasegSegmenter.predict
                    prob = model.resize_to_crop(
                        model.logits_to_probs(logits[name][i:i + 1])[0],
                        (h, w))[0]
                    ious[name].append(
                        mask_iou((prob > model.mask_thr).numpy(), gt))
    return {k: crop_iou_summary(v, labels) for k, v in ious.items()}


def main(argv=None):
    from mmboxseg.registry import MODELS
    from mmboxseg.utils import register_all_modules
    args = parse_args(argv)
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    loader_cfg = cfg[f'{args.split}_dataloader']
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    results = evaluate_heads(model, Runner.build_dataloader(loader_cfg))
    print(f'| head ({args.split} crops) | mIoU* | IoU@50 | IoU@75 | mIoU |')
    print('|---|---|---|---|---|')
    for name, res in results.items():
        label = 'box as mask' if name == 'box' else name
        print(f'| {label} | {res["mIoU*"]:.1f} | {res["IoU@50"]:.1f} | '
              f'{res["IoU@75"]:.1f} | {res["mIoU"]:.1f} |')
    return results


if __name__ == '__main__':
    main()
