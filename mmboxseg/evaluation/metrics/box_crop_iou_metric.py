# Copyright (c) mmboxseg contributors. All rights reserved.
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmboxseg.registry import METRICS


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two binary masks of one shape; two empty masks give 1."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def crop_iou_summary(ious: Sequence[float],
                     labels: Sequence[int]) -> Dict[str, float]:
    """BoxCaseg's class-agnostic segmentation metrics (Sec. 4), in percent.

    - ``IoU@50`` / ``IoU@75``: share of instances whose mask IoU is at
      least 0.5 / 0.75 (release ``cal_cls_iou_new``: ``>=``);
    - ``mIoU*``: the per-class mean of instance IoUs, averaged over the
      classes present. The release divides by all 20 (VOC) / 80 (COCO)
      classes with an absent class counting 0; on the full val sets every
      class is present and both agree, on subsets this one does not punish
      a missing class;
    - ``mIoU``: the plain mean over instances.
    """
    ious = np.asarray(ious, dtype=np.float64)
    labels = np.asarray(labels)
    if ious.size == 0:
        raise ValueError('no crops were evaluated')
    per_class = [ious[labels == c].mean() for c in np.unique(labels)]
    return {
        'mIoU*': 100.0 * float(np.mean(per_class)),
        'IoU@50': 100.0 * float((ious >= 0.5).mean()),
        'IoU@75': 100.0 * float((ious >= 0.75).mean()),
        'mIoU': 100.0 * float(ious.mean()),
    }


@METRICS.register_module()
class BoxCropIoUMetric(BaseMetric):
    """IoU@50, IoU@75 and mIoU* of a box-crop segmenter (BoxCaseg Tables
    3-6) on evaluation crops with ground-truth masks.

    Each prediction (``pred_sem_seg.sem_seg``, ``[1, h, w]`` at the crop's
    original size) is compared with ``metainfo['gt_crop_mask']`` (packed from
    :class:`BoxJitterCrop` with ``jitter=False`` on a
    :class:`BoxCropDataset` with ``with_mask=True``); ``bbox_label`` groups
    the instances by class for mIoU*.

    Args:
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Defaults to 'crop'.
    """
    default_prefix: Optional[str] = 'crop'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt = sample.get('gt_crop_mask')
            if gt is None:
                raise KeyError(
                    'BoxCropIoUMetric needs metainfo gt_crop_mask: use '
                    "BoxCropDataset(with_mask=True), BoxJitterCrop(jitter="
                    "False) and 'gt_crop_mask' in PackDetInputs meta_keys")
            pred = sample['pred_sem_seg']['sem_seg'][0].cpu().numpy()
            gt = np.asarray(gt)
            if pred.shape != gt.shape:
                raise ValueError(f'prediction {pred.shape} and ground truth '
                                 f'{gt.shape} of a crop differ in size')
            self.results.append((mask_iou(pred,
                                          gt), int(sample['bbox_label'])))

    def compute_metrics(self, results: List) -> Dict[str, float]:
        ious, labels = zip(*results)
        summary = crop_iou_summary(ious, labels)
        counts = defaultdict(int)
        for label in labels:
            counts[label] += 1
        MMLogger.get_current_instance().info(
            f'{len(ious)} crops of {len(counts)} classes: ' +
            ', '.join(f'{k} {v:.2f}' for k, v in summary.items()))
        return summary
