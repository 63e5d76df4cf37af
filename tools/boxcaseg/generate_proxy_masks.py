# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg stage 2: proxy masks for every ground-truth box of a COCO file.

Every box is cropped exactly (no context) and resized as the config's
``proxy_pipeline`` says (320x320 in the paper), the segmenter predicts its
fused salient/transferred mask, which is pasted back into the image and
thresholded at 0.5 (release ``deal_output``). The masks of one image are
then merged by "smaller object better" (each pixel to the smallest box
claiming it, ``--no-merge`` turns it off), and every instance records its
*proxy box agreement*, the IoU of its mask's tight box with its box. The
output is the input COCO file with, per annotation, ``segmentation``
(compressed RLE), ``area`` (mask area) and ``proxy_box_agreement``. Masks
are not dropped here: the Proxy Mask R-CNN ignores low-agreement masks in
its mask loss (``ProxyFCNMaskHead(drop_thr=0.95)``) and still trains on
their boxes.

The input is read as boxes only: its ``segmentation`` fields, if any, are
neither read nor copied. ``--gt-ann`` (a file with ground-truth masks for
the same images, e.g. the toy set's ``instances_train_with_masks.json``)
adds a quality report: mIoU of the masks before and after the merge, and of
the masks kept at ``--drop-thr``, with the drop rate.

Large files: images are streamed (one chunk of about ``--batch-size`` boxes
in memory at a time) and each finished image is appended to
``OUT_ANN.partial.jsonl``; after an interruption ``--resume`` skips the
images already there. The partial file is removed once OUT_ANN is written.

Example::

    python tools/boxcaseg/generate_proxy_masks.py \\
        configs/boxcaseg/boxcaseg_segmenter_r18_toy.py \\
        work_dirs/boxcaseg_segmenter_r18_toy/iter_2000.pth \\
        data/toy/annotations/instances_train.json \\
        data/toy/annotations/instances_train_proxy.json \\
        --img-prefix data/toy/images/train \\
        --gt-ann data/toy/annotations/instances_train_with_masks.json
"""
import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from mmboxseg.utils.coco_masks import (add_io_arguments, config_digest,
                                       encode_mask, file_digest, load_gt_masks,
                                       load_image, open_partial, valid_box,
                                       write_json_atomic)

FORMAT = 'mmboxseg-proxy-masks-v1'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate BoxCaseg proxy masks for a box-annotated COCO '
        'file (stage 2 of BoxCaseg).')
    add_io_arguments(parser, 'segmenter', 32, 'crops per forward pass')
    parser.add_argument(
        '--no-merge',
        action='store_true',
        help='keep the pasted masks without the smaller-object-better merge')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='continue from OUT_ANN.partial.jsonl')
    parser.add_argument(
        '--gt-ann', help='COCO file with ground-truth masks: report mIoU')
    parser.add_argument(
        '--drop-thr',
        type=float,
        nargs='+',
        default=[0.95],
        help='agreement threshold(s) of the drop rate in the report (the '
        'first one fills the summary keys; several give a table)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings')
    return parser.parse_args(argv)


class ProxyMaskGenerator:
    """Crops, predicts, pastes, merges and scores the boxes of images.

    Args:
        model: A :class:`BoxCasegSegmenter` in eval mode.
        pipeline (list[dict]): Crop pipeline without image loading.
        merge (bool): Apply the smaller-object-better merge.
        batch_size (int): Crops per forward pass.
    """

    def __init__(self, model, pipeline, merge=True, batch_size=32):
        self.model = model
        self.pipeline = Compose(pipeline)
        self.merge = merge
        self.batch_size = batch_size

    @torch.no_grad()
    def predict_crops(self, packed):
        probs = []
        for i in range(0, len(packed), self.batch_size):
            data = self.model.data_preprocessor(
                pseudo_collate(packed[i:i + self.batch_size]), False)
            probs.append(self.model.predict_probs(data['inputs']).cpu())
        return torch.cat(probs) if probs else torch.zeros(0, 1, 1)

    def process(self, images):
        """Proxy masks of a chunk of images.

        Args:
            images (list[tuple]): ``(img, boxes)`` with ``img`` an ``[H, W,
                3]`` BGR array (None when ``boxes`` is empty) and ``boxes``
                a list of xyxy boxes.

        Returns:
            list[dict]: per image, ``raw`` and ``masks`` (``[K, H, W]``
            bool, before/after the merge) and ``agreement`` (``[K]``).
        """
        from mmboxseg.models.utils import (merge_smaller_first,
                                           paste_crop_probs,
                                           proxy_box_agreement)
        packed, owners = [], []
        for i, (img, boxes) in enumerate(images):
            for box in boxes:
                packed.append(
                    self.pipeline(
                        dict(
                            img=img,
                            img_shape=img.shape[:2],
                            ori_shape=img.shape[:2],
                            crop_box=box)))
                owners.append(i)
        probs = self.predict_crops(packed)
        regions = torch.stack([
            torch.as_tensor(np.asarray(p['data_samples'].crop_region))
            for p in packed
        ]) if packed else torch.zeros(
            0, 4, dtype=torch.long)
        owners = torch.as_tensor(owners, dtype=torch.long)
        out = []
        for i, (img, boxes) in enumerate(images):
            if not boxes:
                out.append(
                    dict(
                        raw=torch.zeros(0, 1, 1, dtype=torch.bool),
                        masks=torch.zeros(0, 1, 1, dtype=torch.bool),
                        agreement=torch.zeros(0)))
                continue
            sel = owners == i
            hw = img.shape[:2]
            raw = paste_crop_probs(probs[sel], regions[sel], hw) > \
                self.model.mask_thr
            boxes_t = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
            masks = merge_smaller_first(raw, boxes_t) if self.merge else raw
            out.append(
                dict(
                    raw=raw,
                    masks=masks,
                    agreement=proxy_box_agreement(masks,
                                                  regions[sel].float())))
        return out


def run(args):
    from mmdet.apis import init_detector

    from mmboxseg.datasets import validate_coco_file
    from mmboxseg.datasets.transforms.box_jitter_crop import \
        decode_instance_mask
    from mmboxseg.evaluation.metrics import mask_iou
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmboxseg'))
    if 'proxy_pipeline' not in cfg:
        raise SystemExit(f'{args.config} has no `proxy_pipeline` (the crop '
                         'pipeline of stage 2, see configs/boxcaseg/)')
    model = init_detector(cfg, args.checkpoint, device=args.device)
    if not hasattr(model, 'predict_probs'):
        raise SystemExit(f'{args.config} is not a BoxCaseg segmenter '
                         f'(got {type(model).__name__})')
    generator = ProxyMaskGenerator(model, cfg.proxy_pipeline,
                                   not args.no_merge, args.batch_size)

    content = validate_coco_file(args.in_ann)
    anns_of = defaultdict(list)
    for ann in content['annotations']:
        anns_of[ann['image_id']].append(ann)
    gt = load_gt_masks(args.gt_ann) if args.gt_ann else None

    # what decides the masks: model and crop pipeline (after --cfg-options)
    header = dict(
        format=FORMAT,
        in_ann=file_digest(args.in_ann),
        checkpoint=file_digest(args.checkpoint),
        config=config_digest(model=cfg.model, pipeline=cfg.proxy_pipeline),
        merge=not args.no_merge,
        gt=bool(gt))
    partial = args.out_ann + '.partial.jsonl'
    done = open_partial(partial, header, args.resume)
    todo = [im for im in content['images'] if im['id'] not in done]

    num_boxes, seconds = 0, 0.0
    bar = ProgressBar(len(todo)) if todo else None
    with open(partial, 'a') as out:
        chunk = []

        def flush():
            nonlocal num_boxes, seconds
            start = time.perf_counter()
            results = generator.process([(img, boxes)
                                         for _, img, boxes, _ in chunk])
            seconds += time.perf_counter() - start
            for (im, _, boxes, ids), res in zip(chunk, results):
                num_boxes += len(boxes)
                rec = dict(image_id=im['id'], anns=[])
                for k, ann_id in enumerate(ids):
                    mask = res['masks'][k].numpy()
                    entry = dict(
                        id=ann_id,
                        segmentation=encode_mask(mask),
                        area=float(mask.sum()),
                        proxy_box_agreement=round(
                            float(res['agreement'][k]), 6))
                    if gt is not None and ann_id in gt:
                        truth = decode_instance_mask(*gt[ann_id])
                        entry['_iou'] = [
                            mask_iou(res['raw'][k].numpy(), truth),
                            mask_iou(mask, truth)
                        ]
                    rec['anns'].append(entry)
                done[im['id']] = rec
                out.write(json.dumps(rec) + '\n')
                out.flush()
                bar.update()
            chunk.clear()

        pending = 0
        for im in todo:
            boxes, ids = [], []
            for ann in anns_of[im['id']]:
                box = valid_box(ann, im['width'], im['height'])
                if box is not None:
                    boxes.append(box)
                    ids.append(ann['id'])
            # images without usable boxes are recorded without being read
            img = load_image(args.img_prefix, im,
                             args.in_ann) if boxes else None
            chunk.append((im, img, boxes, ids))
            pending += len(boxes)
            if pending >= args.batch_size:
                flush()
                pending = 0
        if chunk:
            flush()
    if bar is not None:
        sys.stdout.write('\n')

    entries = {e['id']: e for rec in done.values() for e in rec['anns']}
    stats = summarise(entries, args.drop_thr, len(content['annotations']))
    annotations = []
    for ann in content['annotations']:
        new = {k: v for k, v in ann.items() if k != 'segmentation'}
        entry = entries.get(ann['id'])
        if entry is None:  # crowd, degenerate or outside the image
            new['proxy_box_agreement'] = 0.0
        else:
            new.update({k: v for k, v in entry.items() if k[0] != '_'})
        annotations.append(new)
    content['annotations'] = annotations
    content.setdefault('info', {})
    content['info'] = dict(
        content['info'],
        proxy_masks=dict(
            tool='tools/boxcaseg/generate_proxy_masks.py',
            config=args.config,
            checkpoint=args.checkpoint,
            merge=not args.no_merge))
    write_json_atomic(content, args.out_ann)
    os.remove(partial)
    if seconds > 0:
        stats['boxes_per_s'] = num_boxes / seconds
    report(stats, args)
    return stats


def summarise(entries, drop_thrs, num_annotations):
    """Agreement, drop rate and (with ground truth) mIoU of the proxy masks;
    per threshold in ``per_thr``, the first threshold also at top level."""
    agreement = np.array([e['proxy_box_agreement'] for e in entries.values()])
    ious = np.array([
        e['_iou'] + [e['proxy_box_agreement']] for e in entries.values()
        if '_iou' in e
    ]).reshape(-1, 3)

    def at(thr):
        row = dict(
            drop_thr=thr,
            drop_rate=float(
                (agreement < thr).mean()) if len(agreement) else 0.0)
        if len(ious):
            kept = ious[:, 2] >= thr
            row.update(
                kept=int(kept.sum()),
                miou_kept=100 *
                float(ious[kept, 1].mean()) if kept.any() else float('nan'),
                miou_dropped=100 * float(ious[~kept, 1].mean()) if
                (~kept).any() else float('nan'))
        return row

    per_thr = [at(thr) for thr in drop_thrs]
    stats = dict(
        annotations=num_annotations,
        masks=len(entries),
        mean_agreement=float(agreement.mean()) if len(agreement) else 0.0,
        per_thr=per_thr,
        **per_thr[0])
    if len(ious):
        stats.update(
            evaluated=len(ious),
            miou_raw=100 * float(ious[:, 0].mean()),
            miou_merged=100 * float(ious[:, 1].mean()))
    return stats


def report(stats, args):
    print(f'{args.out_ann}: {stats["masks"]} proxy masks for '
          f'{stats["annotations"]} annotations; mean proxy box agreement '
          f'{stats["mean_agreement"]:.3f}; drop rate at '
          f'{stats["drop_thr"]:.2f}: {100 * stats["drop_rate"]:.1f} %')
    if 'boxes_per_s' in stats:
        print(f'throughput: {stats["boxes_per_s"]:.1f} boxes/s '
              f'({args.device}, batch {args.batch_size}; crop, predict, '
              'paste, merge)')
    if 'evaluated' in stats:
        print(f'mask IoU against {args.gt_ann} ({stats["evaluated"]} '
              f'instances): mIoU before merge {stats["miou_raw"]:.2f}, '
              f'after merge {stats["miou_merged"]:.2f}; kept at '
              f'{stats["drop_thr"]:.2f}: {stats["miou_kept"]:.2f}, dropped: '
              f'{stats["miou_dropped"]:.2f}')
    if len(stats['per_thr']) > 1:
        has_iou = 'evaluated' in stats
        print('| drop threshold | drop rate (%) |' +
              (' masks kept | mIoU kept | mIoU dropped |' if has_iou else ''))
        print('|---|---|' + ('---|---|---|' if has_iou else ''))
        for row in stats['per_thr']:
            line = f'| {row["drop_thr"]:.2f} | {100 * row["drop_rate"]:.1f} |'
            if has_iou:
                line += (f' {row["kept"]} | {row["miou_kept"]:.2f} | '
                         f'{row["miou_dropped"]:.2f} |')
            print(line)


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
