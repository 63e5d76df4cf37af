# Copyright (c) mmboxseg contributors. All rights reserved.
"""Export a model's masks as pseudo masks for the boxes of a COCO file.

Runs any mmboxseg model (BoxInst, BoxTeacher, SIM, DiscoBox, ...) or any
mmdet instance-segmentation model over the images of a box-annotated COCO
file and writes the file again with, for the boxes that get one, a mask:

1. **Assignment** (BoxTeacher Alg. 1, :func:`assign_pseudo_masks`):
   predictions are visited by descending confidence, those below
   ``--score-thr`` are dropped, and each is given to the free box it
   overlaps most if that IoU is at least ``--iou-thr``; one prediction per
   box. The confidence ``c`` is ``sqrt(score)`` for FCOS-family models
   (BoxInst, CondInst, BoxTeacher, SIM: mmdet's score is ``cls * ctr`` and
   BoxTeacher ranks by ``sqrt(cls * ctr)``), the score itself otherwise
   (``--confidence`` overrides). Models that predict no boxes (mmdet's
   SOLOv2) are assigned by the tight boxes of their masks.
2. **Clipping**: a mask is cut to the pixels its box overlaps
   (``crop_region``: floor/ceil of the box). A prediction whose mask is
   empty inside the box counts as unassigned ("empty").
3. **Fallback**: unassigned boxes keep no mask (default: mixed supervision
   trains them from their box) or, with ``--box-fallback``, get their box
   as mask (``pseudo_mask_source: 'box'``).
4. **Merge** (``--merge``, BoxCaseg's "smaller object better",
   :func:`merge_smaller_first`): a pixel claimed by several masks of an
   image goes to the smallest box. A mask the merge empties is dropped
   ("emptied").
5. **Quality**, per exported mask: ``pseudo_mask_score``, BoxTeacher's
   mask-aware score (Eq. 1, paper mode, :func:`mask_aware_score`)
   ``sqrt(c * mbar)`` with ``mbar`` the mean mask probability of the
   mask's pixels inside the box, computed on the prediction before the
   merge (0 for box fallbacks); and ``proxy_box_agreement``, BoxCaseg's IoU
   of the final mask's tight box with the box's pixel region
   (:func:`proxy_box_agreement`). Mask probabilities are read from
   CondInst-family mask heads (mmdet's ``CondInstMaskHead`` and its
   subclasses: BoxInst, BoxTeacher, SIM), with the head's own upsampling;
   other models give binary masks only, for which ``mbar`` is 1 on a
   non-empty mask and the score reduces to ``sqrt(c)``.

The output keeps ``images``, ``categories`` and every annotation with its
id and box; an annotation with a mask gets ``segmentation`` (compressed
RLE), ``area`` (mask area), ``pseudo_mask_score``, ``proxy_box_agreement``
and ``pseudo_mask_source`` (``'model'`` or ``'box'``). The input is read as
boxes only: its ``segmentation`` fields are neither read nor copied (a
warning counts them). Crowd and ``ignore`` boxes (never trained on),
degenerate boxes (< 1 px after clipping to the image) and boxes outside the
image get no mask (:func:`valid_box`, the rules of
:class:`~mmboxseg.datasets.BoxCocoDataset`), counted in the summary as
skipped. The file loads in pycocotools and in ``BoxCocoDataset`` with mixed
supervision (``supervision='mixed'`` in the mask head and the preprocessor,
``pad_mask=True`` and
``LoadAnnotations(with_mask=True)``, as in
``configs/boxinst/boxinst_r50_fpn_ms-90k_coco-semi-voc20.py``; README,
"Mixed supervision"): the masked instances get the mask loss, the others
the box terms.

A summary ends the run: boxes, model masks and coverage, fallbacks, empty
and emptied masks, mean score and agreement, images/s. ``--gt-ann`` (a
file with ground-truth masks for the same images, e.g. the toy set's
``instances_train_with_masks.json``) adds the mIoU of the exported masks,
of the model masks and of the box fallbacks against the ground truth.

Large files: images are streamed in batches of ``--batch-size`` images
(only one batch of images, and for CondInst heads the low-resolution mask
logits, are in memory) and each finished image is appended to
``OUT_ANN.partial.jsonl``, read back once at the end; after an
interruption ``--resume`` skips the images already there. Batches are fixed
by position in the file, so a resumed run pads every image as one run does
and writes a byte-identical OUT_ANN. ``--max-images N`` stops after ``N``
images of a run (the partial file stays for ``--resume``). Invalid input
fails with the file and field named: a malformed COCO file
(:class:`AnnotationFileError`), an unreadable image (``FileNotFoundError``)
or an image whose size differs from its ``width``/``height``
(``ValueError``).

Example::

    python tools/misc/export_pseudo_masks.py \\
        configs/boxinst/boxinst_r18_fpn_toy.py \\
        work_dirs/boxinst_r18_fpn_toy/iter_1500.pth \\
        data/toy/annotations/instances_train.json \\
        data/toy/annotations/instances_train_pseudo.json \\
        --img-prefix data/toy/images/train --merge \\
        --gt-ann data/toy/annotations/instances_train_with_masks.json
"""
import argparse
import copy
import json
import logging
import os
import os.path as osp
import sys
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from mmboxseg.datasets.transforms.box_jitter_crop import (crop_region,
                                                          decode_instance_mask)
from mmboxseg.evaluation.metrics import mask_iou
from mmboxseg.models.utils import (assign_pseudo_masks, mask_aware_score,
                                   masks_to_boxes, merge_smaller_first,
                                   proxy_box_agreement)
from mmboxseg.utils.coco_masks import (add_io_arguments, config_digest,
                                       encode_mask, file_digest, load_gt_masks,
                                       load_image, open_partial, valid_box,
                                       write_json_atomic)

FORMAT = 'mmboxseg-pseudo-masks-v1'
TOOL = 'tools/misc/export_pseudo_masks.py'
CONFIDENCES = ('auto', 'sqrt', 'score')
# pseudo_mask_source of the exported masks, by code in ``source``
NO_MASK, MODEL, BOX = 0, 1, 2
SOURCE_NAMES = {MODEL: 'model', BOX: 'box'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a model\'s masks as pseudo masks for the boxes '
        'of a COCO file (BoxTeacher Alg. 1 assignment).')
    add_io_arguments(parser, 'model', 4, 'images per forward pass')
    parser.add_argument(
        '--iou-thr',
        type=float,
        default=0.5,
        help='least box IoU of an assigned prediction (BoxTeacher: 0.5)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.0,
        help='least confidence of an assigned prediction (BoxTeacher: 0.0)')
    parser.add_argument(
        '--confidence',
        choices=CONFIDENCES,
        default='auto',
        help="confidence c of a prediction: 'sqrt' of its score (FCOS "
        "family: score = cls * ctr), its 'score', or 'auto' (sqrt for "
        'models with an FCOS head)')
    parser.add_argument(
        '--merge',
        action='store_true',
        help='BoxCaseg merge: a pixel claimed by several masks goes to the '
        'smallest box')
    parser.add_argument(
        '--box-fallback',
        action='store_true',
        help='boxes without an assigned prediction get their box as mask')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='continue from OUT_ANN.partial.jsonl')
    parser.add_argument(
        '--max-images',
        type=int,
        help='stop after this many images (OUT_ANN.partial.jsonl stays for '
        '--resume)')
    parser.add_argument(
        '--gt-ann', help='COCO file with ground-truth masks: report mIoU')
    parser.add_argument(
        '--vis-dir',
        help='also draw the exported masks of the first --vis-num images '
        'as PNGs here (model masks filled, box fallbacks outlined)')
    parser.add_argument('--vis-num', type=int, default=8)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings')
    args = parser.parse_args(argv)
    for key in ('iou_thr', 'score_thr'):
        if not 0.0 <= getattr(args, key) <= 1.0:
            parser.error(f'--{key.replace("_", "-")} must be in [0, 1], got '
                         f'{getattr(args, key)}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be positive, got {args.batch_size}')
    if args.max_images is not None and args.max_images < 0:
        parser.error(f'--max-images must be >= 0, got {args.max_images}')
    return args


# -- per image --------------------------------------------------------------
def region_masks(regions, hw):
    """Masks of integer pixel regions.

    Args:
        regions (Tensor): ``[K, 4]`` long ``x0, y0, x1, y1`` (exclusive end,
            :func:`crop_region`).
        hw (tuple[int, int]): Image size ``(H, W)``.

    Returns:
        Tensor: ``[K, H, W]`` bool, True inside each region.
    """
    h, w = hw
    ys = torch.arange(h, device=regions.device)
    xs = torch.arange(w, device=regions.device)
    y_in = (ys[None] >= regions[:, 1:2]) & (ys[None] < regions[:, 3:4])
    x_in = (xs[None] >= regions[:, 0:1]) & (xs[None] < regions[:, 2:3])
    return y_in[:, :, None] & x_in[:, None, :]


def assign_masks(pred_boxes,
                 confidences,
                 pred_masks,
                 gt_boxes,
                 box_masks,
                 iou_thr=0.5,
                 score_thr=0.0,
                 pred_probs=None,
                 mask_thr=0.5):
    """BoxTeacher's assignment (Alg. 1) and mask-aware score (Eq. 1) for the
    boxes of one image, with the masks clipped to their box.

    Args:
        pred_boxes (Tensor): ``[N, 4]`` predicted xyxy boxes.
        confidences (Tensor): ``[N]`` confidences ``c`` (order, threshold
            and Eq. 1).
        pred_masks (Tensor): ``[N, H, W]`` bool predicted masks.
        gt_boxes (Tensor): ``[K, 4]`` xyxy boxes of the annotations.
        box_masks (Tensor): ``[K, H, W]`` bool, the pixels of each box.
        iou_thr (float): Least IoU of an assignment (tau_iou).
        score_thr (float): Least confidence of an assignment (tau_c).
        pred_probs (Tensor | CondInstMaskProbs, optional): ``[N, H, W]``
            mask probabilities, indexed by the assigned predictions only;
            None scores the binary masks (``mbar = 1`` on a non-empty mask,
            so the score is ``sqrt(c)``).
        mask_thr (float): Mask threshold of Eq. 1 (tau_m) with
            ``pred_probs``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``[K]`` long, the prediction
        assigned to each box or -1; ``[K, H, W]`` bool masks, the assigned
        prediction's mask inside the box (all False for unassigned boxes,
        and for an assigned mask with no pixel inside its box); ``[K]``
        mask-aware scores (0 where the mask is empty).
    """
    num_gts = gt_boxes.size(0)
    masks = box_masks.new_zeros(box_masks.shape)
    scores = torch.zeros(num_gts)
    assigned = assign_pseudo_masks(pred_boxes, confidences, gt_boxes, iou_thr,
                                   score_thr)
    matched = assigned >= 0
    if not matched.any():
        return assigned, masks, scores
    preds = assigned[matched]
    masks[matched] = pred_masks[preds] & box_masks[matched]
    if pred_probs is None:
        probs, mask_thr = pred_masks[preds].float(), 0.5
    else:
        probs = pred_probs[preds].float()
    scores[matched] = mask_aware_score(
        probs,
        confidences[preds].float(),
        box_masks[matched],
        mask_thr=mask_thr,
        mode='paper')
    scores[~masks.flatten(1).any(dim=1)] = 0.0
    return assigned, masks, scores


def finalise_masks(masks,
                   gt_boxes,
                   box_masks,
                   regions,
                   merge=False,
                   box_fallback=False):
    """Fallback, merge and proxy box agreement of one image's masks.

    Args:
        masks (Tensor): ``[K, H, W]`` bool clipped masks of the assigned
            boxes (:func:`assign_masks`), empty for the others.
        gt_boxes (Tensor): ``[K, 4]`` xyxy boxes (merge order).
        box_masks (Tensor): ``[K, H, W]`` bool box pixels (fallback).
        regions (Tensor): ``[K, 4]`` long pixel regions of the boxes.
        merge (bool): Apply :func:`merge_smaller_first`.
        box_fallback (bool): Boxes without a mask get their box.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``[K, H, W]`` bool final masks;
        ``[K]`` long source (``MODEL``, ``BOX`` or ``NO_MASK``, also for a
        mask the merge emptied); ``[K]`` agreements (0 without a mask).
    """
    has_mask = masks.flatten(1).any(dim=1)
    source = torch.where(has_mask, MODEL, NO_MASK)
    if box_fallback:
        masks = torch.where(has_mask[:, None, None], masks, box_masks)
        source = torch.where(has_mask, MODEL, BOX)
    if merge:
        masks = merge_smaller_first(masks, gt_boxes)
    source[~masks.flatten(1).any(dim=1)] = NO_MASK
    agreement = proxy_box_agreement(masks, regions.float())
    return masks, source, agreement


def export_image(pred,
                 boxes,
                 hw,
                 iou_thr=0.5,
                 score_thr=0.0,
                 merge=False,
                 box_fallback=False):
    """Pseudo masks of the boxes of one image.

    Args:
        pred (dict): ``bboxes`` ``[N, 4]``, ``confidences`` ``[N]``,
            ``masks`` ``[N, H, W]`` bool and ``probs`` (``[N, H, W]`` or
            None) with ``mask_thr`` (:meth:`PseudoMaskPredictor.predict`).
        boxes (list[list[float]]): ``K`` clipped xyxy boxes
            (:func:`valid_box`).
        hw (tuple[int, int]): Image size.
        Others: as :func:`assign_masks` and :func:`finalise_masks`.

    Returns:
        dict: ``masks`` ``[K, H, W]`` bool, ``source`` ``[K]``, ``scores``
        ``[K]`` (0 for box fallbacks), ``agreement`` ``[K]``, and the
        counts ``assigned`` (Alg. 1), ``empty`` (assigned, empty inside
        the box) and ``emptied`` (by the merge).
    """
    gt_boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    regions = torch.from_numpy(
        np.stack([crop_region(box, hw) for box in boxes]).reshape(-1, 4))
    box_masks = region_masks(regions, hw)
    assigned, masks, scores = assign_masks(pred['bboxes'], pred['confidences'],
                                           pred['masks'], gt_boxes,
                                           box_masks, iou_thr, score_thr,
                                           pred.get('probs'),
                                           pred.get('mask_thr', 0.5))
    has_mask = masks.flatten(1).any(dim=1)
    final, source, agreement = finalise_masks(masks, gt_boxes, box_masks,
                                              regions, merge, box_fallback)
    # with the fallback every box has a mask before the merge
    before_merge = torch.ones_like(has_mask) if box_fallback else has_mask
    return dict(
        masks=final,
        source=source,
        scores=torch.where(source == MODEL, scores, 0.0),
        agreement=agreement,
        assigned=int((assigned >= 0).sum()),
        empty=int(((assigned >= 0) & ~has_mask).sum()),
        emptied=int((before_merge & (source == NO_MASK)).sum()))


# -- inference --------------------------------------------------------------
def condinst_probs(head, mask_preds, img_meta):
    """``[N, ori_h, ori_w]`` mask probabilities of a CondInst mask head from
    its ``[N, H/s, W/s]`` logits: the steps of
    ``CondInstMaskHead._predict_by_feat_single`` with ``rescale=True``,
    before its threshold. Each mask is upsampled on its own, so a subset of
    the logits gives the same probabilities as the whole."""
    from mmdet.models.utils import aligned_bilinear
    img_h, img_w = img_meta['img_shape'][:2]
    ori_h, ori_w = img_meta['ori_shape'][:2]
    probs = aligned_bilinear(mask_preds.sigmoid().unsqueeze(0),
                             head.mask_out_stride)[:, :, :img_h, :img_w]
    return F.interpolate(
        probs, (ori_h, ori_w), mode='bilinear', align_corners=False)[0]


class CondInstMaskProbs:
    """The mask probabilities of one image's CondInst predictions, computed
    on demand: only the stride-``s`` logits are kept (``N`` full-size float
    maps per image would dominate the memory of a batch), and
    ``probs[index]`` upsamples those of the selected predictions.

    Each computed subset is checked against the head's own masks
    (``probs > mask_thr``); should they ever differ (a changed mmdet head),
    a warning is given and the binary masks are returned instead, which
    Eq. 1 scores as ``mbar = 1``.

    Args:
        head (CondInstMaskHead): The head that predicted.
        mask_preds (Tensor): ``[N, H/s, W/s]`` mask logits.
        img_meta (dict): ``img_shape`` and ``ori_shape``.
        masks (Tensor): ``[N, ori_h, ori_w]`` bool masks the head returned.
        mask_thr (float): The head's mask threshold.
    """

    def __init__(self, head, mask_preds, img_meta, masks, mask_thr):
        self.head = head
        self.mask_preds = mask_preds.detach()
        self.img_meta = dict(
            img_shape=img_meta['img_shape'], ori_shape=img_meta['ori_shape'])
        self.masks = masks
        self.mask_thr = mask_thr

    def __len__(self):
        return len(self.mask_preds)

    def __getitem__(self, index):
        """``[M, ori_h, ori_w]`` float probabilities (CPU) of the
        predictions ``index`` selects."""
        index = torch.as_tensor(index, device=self.mask_preds.device)
        masks = self.masks[index]
        probs = condinst_probs(self.head, self.mask_preds[index],
                               self.img_meta)
        if not torch.equal(probs > self.mask_thr, masks):
            warnings.warn('mask probabilities recomputed from the CondInst '
                          'head differ from its masks; scoring the binary '
                          'masks instead')
            probs = masks.float()
        return probs.cpu()


@contextmanager
def capture_mask_probs(model):
    """Record the mask logits of the model's CondInst mask heads.

    Inside the context, each ``_predict_by_feat_single`` of a
    ``CondInstMaskHead`` (also an EMA teacher's) runs unchanged and appends
    a :class:`CondInstMaskProbs` of its call to the yielded list; its
    ``masks`` is the very tensor the head returned. The heads are restored
    on exit.
    """
    from mmdet.models.dense_heads import CondInstMaskHead
    captured = []
    heads = [m for m in model.modules() if isinstance(m, CondInstMaskHead)]
    saved = [head.__dict__.get('_predict_by_feat_single') for head in heads]

    def wrap(head):
        original = head._predict_by_feat_single

        def predict_single(mask_preds, bboxes, img_meta, rescale, cfg=None):
            masks = original(
                mask_preds=mask_preds,
                bboxes=bboxes,
                img_meta=img_meta,
                rescale=rescale,
                cfg=cfg)
            if rescale:
                captured.append(
                    CondInstMaskProbs(head, mask_preds, img_meta, masks,
                                      (cfg or head.test_cfg).mask_thr))
            return masks

        head._predict_by_feat_single = predict_single

    try:
        for head in heads:
            wrap(head)
        yield captured
    finally:
        for head, old in zip(heads, saved):
            if old is None:
                del head._predict_by_feat_single
            else:
                head._predict_by_feat_single = old


def build_inference_pipeline(cfg):
    """The config's test pipeline for images in memory: the first
    transform (``LoadImageFromFile``) becomes ``LoadImageFromNDArray`` (as
    mmdet's ``inference_detector``) and ``LoadAnnotations`` transforms are
    dropped (there are no annotations to load)."""
    from mmdet.utils import get_test_pipeline_cfg
    pipeline = copy.deepcopy(get_test_pipeline_cfg(cfg))
    if not pipeline or 'LoadImageFromFile' not in str(pipeline[0]['type']):
        raise SystemExit(
            'the test pipeline of the config must start with '
            f'LoadImageFromFile, got {pipeline[0] if pipeline else None}')
    pipeline[0]['type'] = 'mmdet.LoadImageFromNDArray'
    return [pipeline[0]] + [
        t for t in pipeline[1:] if 'LoadAnnotations' not in str(t['type'])
    ]


class PseudoMaskPredictor:
    """Runs a detector's test pipeline and predict step over image batches.

    Args:
        model (nn.Module): An mmdet detector in eval mode
            (:func:`init_detector`).
        pipeline (list[dict]): :func:`build_inference_pipeline`.
        confidence (str): ``'auto'``, ``'sqrt'`` or ``'score'``.
    """

    def __init__(self, model, pipeline, confidence='auto'):
        from mmdet.models.dense_heads import FCOSHead
        self.model = model
        self.pipeline = Compose(pipeline)
        if confidence == 'auto':
            fcos = any(isinstance(m, FCOSHead) for m in model.modules())
            confidence = 'sqrt' if fcos else 'score'
        self.confidence = confidence

    @staticmethod
    def has_boxes(boxes):
        """Whether ``[N, 4]`` predicted boxes are real: mmdet's SOLOv2
        leaves them all zero. No prediction: nothing to replace."""
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return len(boxes) == 0 or bool(valid.any())

    @torch.no_grad()
    def predict(self, images):
        """Predictions of a batch of images.

        Args:
            images (list[tuple]): ``(img, img_id)`` with ``img`` an ``[H,
                W, 3]`` BGR array.

        Returns:
            list[dict]: per image, on the CPU: ``bboxes`` ``[N, 4]`` (the
            tight boxes of the masks for models that predict none),
            ``confidences`` ``[N]``, ``masks`` ``[N, H, W]`` bool,
            ``probs`` (a :class:`CondInstMaskProbs` for CondInst-family
            models, else None) and ``mask_thr``.
        """
        data = pseudo_collate([
            self.pipeline(dict(img=img, img_id=img_id))
            for img, img_id in images
        ])
        with capture_mask_probs(self.model) as captured:
            samples = self.model.test_step(data)
        by_masks = {id(c.masks): c for c in captured}
        out = []
        for sample in samples:
            pred = sample.pred_instances
            masks = pred.masks.bool()
            boxes = pred.get('bboxes')
            if boxes is None or not self.has_boxes(boxes):
                boxes = masks_to_boxes(masks)  # models without boxes (SOLO)
            scores = pred.scores.float().clamp(min=0)
            probs = by_masks.get(id(pred.masks))
            out.append(
                dict(
                    bboxes=boxes.float().cpu(),
                    confidences=(scores.sqrt() if self.confidence == 'sqrt'
                                 else scores).cpu(),
                    masks=masks.cpu(),
                    probs=probs,
                    mask_thr=probs.mask_thr if probs is not None else 0.5))
        return out


# -- the run ----------------------------------------------------------------
def image_record(im, ids, result, gt, skipped):
    """The partial-file line of one image: counts and one entry per
    exported mask (``_iou`` against the ground truth, when given)."""
    rec = dict(
        image_id=im['id'],
        boxes=len(ids),
        skipped=skipped,
        assigned=result['assigned'] if result else 0,
        empty=result['empty'] if result else 0,
        emptied=result['emptied'] if result else 0,
        anns=[])
    for k, ann_id in enumerate(ids):
        source = int(result['source'][k])
        if source == NO_MASK:
            continue
        mask = result['masks'][k].numpy()
        entry = dict(
            id=ann_id,
            segmentation=encode_mask(mask),
            area=float(mask.sum()),
            pseudo_mask_score=round(float(result['scores'][k]), 6),
            proxy_box_agreement=round(float(result['agreement'][k]), 6),
            pseudo_mask_source=SOURCE_NAMES[source])
        if gt is not None and ann_id in gt:
            entry['_iou'] = mask_iou(mask, decode_instance_mask(*gt[ann_id]))
        rec['anns'].append(entry)
    return rec


def run(args):
    from mmdet.apis import init_detector
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.logging import print_log

    from mmboxseg.datasets import validate_coco_file
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmboxseg'))
    pipeline = build_inference_pipeline(cfg)
    model = init_detector(cfg, args.checkpoint, device=args.device)
    predictor = PseudoMaskPredictor(model, pipeline, args.confidence)

    content = validate_coco_file(args.in_ann)
    with_seg = sum('segmentation' in a for a in content['annotations'])
    if with_seg:
        print_log(
            f'{args.in_ann}: {with_seg} annotations carry a `segmentation`; '
            'it is neither read nor copied (the output holds the model\'s '
            'masks only)',
            logger='current',
            level=logging.WARNING)
    anns_of = defaultdict(list)
    for ann in content['annotations']:
        anns_of[ann['image_id']].append(ann)
    gt = load_gt_masks(args.gt_ann) if args.gt_ann else None

    options = dict(
        iou_thr=args.iou_thr,
        score_thr=args.score_thr,
        merge=args.merge,
        box_fallback=args.box_fallback)
    header = dict(
        format=FORMAT,
        in_ann=file_digest(args.in_ann),
        checkpoint=file_digest(args.checkpoint),
        config=config_digest(
            model=cfg.model, pipeline=get_test_pipeline_cfg(cfg)),
        batch_size=args.batch_size,
        gt=bool(gt),
        confidence=predictor.confidence,
        **options)
    partial = args.out_ann + '.partial.jsonl'
    # like mmengine's dump: the output's folder is made, not required
    os.makedirs(osp.dirname(osp.abspath(args.out_ann)), exist_ok=True)
    done = set(open_partial(partial, header, args.resume))
    num_todo = sum(im['id'] not in done for im in content['images'])
    limit = num_todo if args.max_images is None else min(
        args.max_images, num_todo)

    new = 0
    bar = ProgressBar(limit) if limit else None
    start = time.perf_counter()
    with open(partial, 'a') as out:

        def record(rec):
            nonlocal new
            out.write(json.dumps(rec) + '\n')
            out.flush()
            done.add(rec['image_id'])
            new += 1
            bar.update()

        def flush(chunk):
            # the whole chunk is predicted even if some of its images are
            # done: the batch (and so its padding) is the one of one run
            if all(im['id'] in done for im, _, _ in chunk):
                return
            images = [(load_image(args.img_prefix, im, args.in_ann), im['id'])
                      for im, _, _ in chunk]
            preds = predictor.predict(images)
            for (im, boxes, ids), (img, _), pred in zip(chunk, images, preds):
                if im['id'] in done or new >= limit:
                    continue
                result = export_image(pred, boxes, img.shape[:2], **options)
                record(
                    image_record(im, ids, result, gt,
                                 len(anns_of[im['id']]) - len(ids)))

        chunk = []
        for im in content['images']:
            if new >= limit:
                break
            boxes, ids = [], []
            for ann in anns_of[im['id']]:
                box = valid_box(ann, im['width'], im['height'])
                if box is not None:
                    boxes.append(box)
                    ids.append(ann['id'])
            if not boxes:
                # images without usable boxes are recorded without being read
                if im['id'] not in done:
                    record(
                        image_record(im, ids, None, gt,
                                     len(anns_of[im['id']])))
                continue
            chunk.append((im, boxes, ids))
            if len(chunk) == args.batch_size:
                flush(chunk)
                chunk = []
        if chunk and new < limit:
            flush(chunk)
    seconds = time.perf_counter() - start
    if bar is not None:
        sys.stdout.write('\n')
    if len(done) < len(content['images']):
        print(f'stopped after {new} images (--max-images); '
              f'{len(done)} of {len(content["images"])} done in {partial}, '
              'run again with --resume to finish')
        return dict(
            complete=False,
            images_done=len(done),
            images=len(content['images']))

    records = read_records(partial)
    entries = {e['id']: e for rec in records for e in rec['anns']}
    annotations = []
    for ann in content['annotations']:
        new_ann = {k: v for k, v in ann.items() if k != 'segmentation'}
        entry = entries.get(ann['id'])
        if entry is not None:
            new_ann.update({k: v for k, v in entry.items() if k[0] != '_'})
        annotations.append(new_ann)
    content['annotations'] = annotations
    content['info'] = dict(
        content.get('info') or {},
        pseudo_masks=dict(
            tool=TOOL,
            config=args.config,
            checkpoint=args.checkpoint,
            confidence=predictor.confidence,
            **options))
    write_json_atomic(content, args.out_ann)
    os.remove(partial)
    if args.vis_dir:
        draw_exported(content, args.img_prefix, args.vis_dir, args.vis_num)
    stats = summarise(records, len(content['annotations']))
    if new and seconds > 0:
        stats['images_per_s'] = new / seconds
    report(stats, args)
    return stats


def draw_exported(content, img_prefix, vis_dir, num):
    """PNG per image (the first ``num`` with boxes) of an exported file:
    model masks filled in their class colour, box fallbacks outlined
    only, every box drawn, ``score/agreement`` written at each box."""
    from mmdet.visualization import DetLocalVisualizer
    from pycocotools import mask as mask_utils
    os.makedirs(vis_dir, exist_ok=True)
    vis = DetLocalVisualizer(name=f'export_vis_{id(content)}')
    anns_of = defaultdict(list)
    for ann in content['annotations']:
        anns_of[ann['image_id']].append(ann)
    palette = [(220, 20, 60), (0, 130, 230), (250, 170, 30), (0, 160, 80),
               (160, 60, 200), (0, 200, 200)]
    images = [im for im in content['images'] if anns_of[im['id']]][:num]
    for im in images:
        img = load_image(img_prefix, im, 'the exported file')
        vis.set_image(mmcv.bgr2rgb(img))
        anns = anns_of[im['id']]
        colours = [palette[a['category_id'] % len(palette)] for a in anns]
        boxes = np.array([a['bbox'] for a in anns], dtype=np.float32)
        boxes[:, 2:] += boxes[:, :2]
        vis.draw_bboxes(boxes, edge_colors=colours, line_widths=1)
        for ann, colour in zip(anns, colours):
            if 'segmentation' not in ann:
                continue
            mask = mask_utils.decode(ann['segmentation']).astype(bool)
            if ann.get('pseudo_mask_source') == 'box':
                continue  # the box outline already shows it
            vis.draw_binary_masks(mask[None], colors=[colour], alphas=0.6)
            vis.draw_texts(
                f'{ann["pseudo_mask_score"]:.2f}/'
                f'{ann["proxy_box_agreement"]:.2f}',
                np.array(ann['bbox'][:2]),
                colors=colour,
                font_sizes=7)
        name = osp.splitext(osp.basename(im['file_name']))[0]
        mmcv.imwrite(
            mmcv.rgb2bgr(vis.get_image()), osp.join(vis_dir, f'{name}.png'))
    print(f'{len(images)} drawings of the exported masks in {vis_dir}')


def read_records(partial):
    """The image records of a finished partial file."""
    with open(partial) as f:
        return [json.loads(line) for line in f.read().splitlines()[1:]]


def summarise(records, num_annotations):
    """Coverage and quality of the exported masks (from the image records
    of :func:`image_record`)."""
    entries = [e for rec in records for e in rec['anns']]
    model = [e for e in entries if e['pseudo_mask_source'] == 'model']
    counts = {
        key: sum(rec[key] for rec in records)
        for key in ('boxes', 'skipped', 'assigned', 'empty', 'emptied')
    }
    boxes = counts['boxes']
    stats = dict(
        images=len(records),
        annotations=num_annotations,
        **counts,
        model=len(model),
        fallback=len(entries) - len(model),
        masks=len(entries),
        coverage=100 * len(model) / boxes if boxes else 0.0,
        masked=100 * len(entries) / boxes if boxes else 0.0,
        mean_score=float(np.mean([e['pseudo_mask_score']
                                  for e in model])) if model else 0.0,
        mean_agreement=float(
            np.mean([e['proxy_box_agreement']
                     for e in model])) if model else 0.0)
    scored = [e for e in entries if '_iou' in e]
    if scored:
        stats['evaluated'] = len(scored)
        stats['miou'] = 100 * float(np.mean([e['_iou'] for e in scored]))
        for name, source in (('model', 'model'), ('fallback', 'box')):
            ious = [
                e['_iou'] for e in scored if e['pseudo_mask_source'] == source
            ]
            stats[f'evaluated_{name}'] = len(ious)
            stats[f'miou_{name}'] = 100 * float(
                np.mean(ious)) if ious else float('nan')
    return stats


def report(stats, args):
    print(f'{args.out_ann}: {stats["model"]} of {stats["boxes"]} boxes got '
          f'a model mask (coverage {stats["coverage"]:.1f} %), '
          f'{stats["fallback"]} their box (--box-fallback), '
          f'{stats["boxes"] - stats["masks"]} no mask; '
          f'{stats["assigned"]} assigned by Alg. 1, of which '
          f'{stats["empty"]} empty inside their box; {stats["emptied"]} '
          f'emptied by the merge; {stats["skipped"]} of '
          f'{stats["annotations"]} annotations skipped (crowd, ignore, '
          'degenerate or outside the image)')
    print(f'model masks: mean pseudo_mask_score {stats["mean_score"]:.3f}, '
          f'mean proxy box agreement {stats["mean_agreement"]:.3f}')
    if 'images_per_s' in stats:
        print(f'throughput: {stats["images_per_s"]:.2f} images/s '
              f'({args.device}, batch {args.batch_size}; load, predict, '
              'assign, encode)')
    if args.gt_ann and 'evaluated' not in stats:
        print(f'mask IoU against {args.gt_ann}: no exported mask has a '
              'ground-truth mask there')
    elif 'evaluated' in stats:
        print(f'mask IoU against {args.gt_ann}: exported masks '
              f'{stats["miou"]:.2f} ({stats["evaluated"]}), model masks '
              f'{stats["miou_model"]:.2f} ({stats["evaluated_model"]}), box '
              f'fallbacks {stats["miou_fallback"]:.2f} '
              f'({stats["evaluated_fallback"]})')


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
