# Copyright (c) mmboxseg contributors. All rights reserved.
from contextlib import contextmanager
from typing import Dict, Sequence

import numpy as np
from mmdet.evaluation.metrics import CocoMetric
from mmdet.evaluation.metrics import coco_metric as coco_metric_module

from mmboxseg.registry import METRICS

COCO_IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1)
# COCOeval's area ranges: all, small, medium, large
AREA_NAMES = ('', '_s', '_m', '_l')


@contextmanager
def _record_coco_evals(records: list):
    """Record every COCOeval object CocoMetric creates, to read its
    precision array afterwards."""
    originals = {}
    for name in ('COCOeval', 'COCOevalMP'):
        original = getattr(coco_metric_module, name)
        originals[name] = original

        class Recording(original):

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                records.append(self)

        setattr(coco_metric_module, name, Recording)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(coco_metric_module, name, original)


@METRICS.register_module()
class IoUThresholdsCocoMetric(CocoMetric):
    """COCO metric that also reports AP at chosen IoU thresholds.

    The box-supervised papers report Pascal VOC masks as AP25, AP50, AP70 and
    AP75 (BoxTeacher Table 2, BoxCaseg Table 9) beside COCO's AP.  This
    metric evaluates once over COCO's ten thresholds plus the extra ones,
    keeps ``{metric}_mAP`` (and ``_s/_m/_l``) over COCO's ten thresholds
    only, and adds ``{metric}_AP25`` style keys for ``ap_iou_thrs``.

    Args:
        ap_iou_thrs (Sequence[float]): Thresholds to report AP at.
            Defaults to (0.25, 0.5, 0.7, 0.75).
        **kwargs: :class:`mmdet.evaluation.CocoMetric` arguments
            (``iou_thrs`` is not accepted: it is derived).
    """

    def __init__(self,
                 ap_iou_thrs: Sequence[float] = (0.25, 0.5, 0.7, 0.75),
                 **kwargs) -> None:
        if 'iou_thrs' in kwargs:
            raise TypeError('IoUThresholdsCocoMetric derives iou_thrs; set '
                            'ap_iou_thrs instead')
        super().__init__(**kwargs)
        for thr in ap_iou_thrs:
            if not 0 < thr < 1:
                raise ValueError(f'ap_iou_thrs: {thr} is not in (0, 1)')
        self.ap_iou_thrs = tuple(float(t) for t in ap_iou_thrs)
        self.iou_thrs = np.unique(
            np.round(np.concatenate([COCO_IOU_THRS, self.ap_iou_thrs]), 4))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        records = []
        with _record_coco_evals(records):
            eval_results = super().compute_metrics(results)
        for coco_eval in records:
            precision = coco_eval.eval.get('precision') \
                if getattr(coco_eval, 'eval', None) else None
            if precision is None:
                continue
            prefix = coco_eval.params.iouType
            if prefix == 'bbox' and 'proposal' in self.metrics:
                continue
            thrs = np.round(np.asarray(coco_eval.params.iouThrs), 4)
            standard = np.isin(thrs, np.round(COCO_IOU_THRS, 4))
            for area_idx, suffix in enumerate(AREA_NAMES):
                eval_results[f'{prefix}_mAP{suffix}'] = _mean_precision(
                    precision[standard, :, :, area_idx, -1])
            for thr in self.ap_iou_thrs:
                idx = int(np.argmin(np.abs(thrs - thr)))
                eval_results[f'{prefix}_AP{int(round(thr * 100))}'] = \
                    _mean_precision(precision[idx, :, :, 0, -1])
        return eval_results


def _mean_precision(precision: np.ndarray) -> float:
    """Mean of the valid (> -1) entries, rounded as CocoMetric does."""
    valid = precision[precision > -1]
    return float(round(float(np.mean(valid)), 3)) if valid.size else -1.0
