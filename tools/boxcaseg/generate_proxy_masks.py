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
import hashlib
import json
import os
import os.path as osp
import sys
import time
from collections import defaultdict

import mmcv
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

FORMAT = 'mmboxseg-proxy-masks-v1'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate BoxCaseg proxy masks for a box-annotated COCO '
        'file (stage 2 of BoxCaseg).')
    parser.add_argument('config', help='segmenter config')
    parser.add_argument('checkpoint', help='segmenter checkpoint')
    parser.add_argument('in_ann', help='COCO file with boxes')
    parser.add_argument('out_ann', help='COCO file to write')
    parser.add_argument(
        '--img-prefix', required=True, help='folder of the images')
    parser.add_argument(
        '--batch-size', type=int, default=32, help='crops per forward pass')
    parser.add_argument('--device', default='cpu')
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


def _file_digest(path):
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def encode_mask(mask):
    """Compressed COCO RLE of an ``[H, W]`` bool mask, JSON ready."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def valid_box(ann, img_w, img_h, min_size=1.0):
    """Clipped xyxy box of an annotation or None (crowd, degenerate or
    outside the image), as :class:`BoxCocoDataset` decides."""
    if ann.get('iscrowd', 0) or ann.get('ignore', False):
        return None
    x, y, w, h = ann['bbox']
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, img_w), min(y + h, img_h)
    if x2 - x1 < min_size or y2 - y1 < min_size:
        return None
    return [float(x1), float(y1), float(x2), float(y2)]


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


def _load_gt_masks(path):
    """``{annotation id: (segmentation, height, width)}`` of the masked
    annotations of a COCO file, decoded only when scored."""
    with open(path) as f:
        content = json.load(f)
    sizes = {im['id']: (im['height'], im['width']) for im in content['images']}
    return {
        ann['id']: (ann['segmentation'], *sizes[ann['image_id']])
        for ann in content['annotations'] if ann.get('segmentation')
    }


def _read_partial(path, header):
    """Finished images of an interrupted run; a torn last line is
    dropped and the file rewritten (atomically) without it."""
    done, lines = {}, []
    with open(path) as f:
        raw = f.read().splitlines()
    try:
        found = json.loads(raw[0]) if raw else None
    except json.JSONDecodeError:
        found = None
    if found is None:
        raise SystemExit(f'{path} has no readable header (interrupted at '
                         'the start); delete it or run without --resume')
    if found != header:
        changed = sorted(
            k for k in set(header) | set(found)
            if header.get(k) != found.get(k))
        raise SystemExit(
            f'{path} was written for other inputs or options (differs in '
            f'{", ".join(changed)}); delete it or run without --resume')
    for line in raw[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # interrupted while writing this line
        done[rec['image_id']] = rec
        lines.append(line)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join([raw[0]] + lines) + '\n')
    os.replace(tmp, path)
    return done


def _config_digest(cfg):
    """Digest of what decides the masks: model and crop pipeline (after
    ``--cfg-options``)."""
    text = json.dumps(
        dict(model=cfg.model, pipeline=cfg.proxy_pipeline),
        sort_keys=True,
        default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def load_image(args, im):
    """The image of a COCO ``images`` entry, checked against its size."""
    path = osp.join(args.img_prefix, im['file_name'])
    img = mmcv.imread(path)
    where = f'image id {im["id"]} in {args.in_ann}'
    if img is None:
        raise FileNotFoundError(
            f'image file {path} (file_name of {where}) cannot be read')
    if img.shape[:2] != (im['height'], im['width']):
        raise ValueError(
            f'{path} is {img.shape[1]}x{img.shape[0]} but fields `width`/'
            f'`height` of {where} say {im["width"]}x{im["height"]}; boxes '
            'and masks would be misplaced')
    return img


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
    gt = _load_gt_masks(args.gt_ann) if args.gt_ann else None

    header = dict(
        format=FORMAT,
        in_ann=_file_digest(args.in_ann),
        checkpoint=_file_digest(args.checkpoint),
        config=_config_digest(cfg),
        merge=not args.no_merge,
        gt=bool(gt))
    partial = args.out_ann + '.partial.jsonl'
    done = {}
    if args.resume and osp.isfile(partial):
        done = _read_partial(partial, header)
        print(f'resuming: {len(done)} images already done')
    else:
        with open(partial, 'w') as f:
            f.write(json.dumps(header) + '\n')
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
            img = load_image(args, im) if boxes else None
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
    tmp = args.out_ann + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(content, f)
    os.replace(tmp, args.out_ann)
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
