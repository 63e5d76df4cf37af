# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmboxseg.registry import METRICS

NORMALISATIONS = ('bbox', 'image')


def _numpy(value) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def pck(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, size: float,
        alpha: float) -> float:
    """Percentage of Correct Keypoints of one pair:
    ``mean_n [ |pred_n - gt_n| <= alpha * size ]`` over the valid points.

    Args:
        pred (np.ndarray): ``[N, 2]`` transferred keypoints.
        gt (np.ndarray): ``[N, 2]`` ground truth, same pixels.
        valid (np.ndarray): ``[N]`` bool.
        size (float): ``max(h, w)`` of the target box or image.
        alpha (float): Threshold factor.

    Returns:
        float: In ``[0, 1]``; NaN without valid points.
    """
    if not valid.any():
        return float('nan')
    dist = np.linalg.norm(pred[valid] - gt[valid], axis=1)
    return float((dist <= alpha * size).mean())


@METRICS.register_module()
class PCKMetric(BaseMetric):
    """PCK@alpha of keypoint transfer on image pairs (PF-PASCAL protocol;
    DiscoBox Table 4), so that ``mim test`` reports correspondence.

    Per pair, the fraction of valid target keypoints whose transferred
    position lies within ``alpha * max(h, w)`` of the ground truth, in the
    target image's original pixels, with ``(h, w)`` the target object's box
    (``'bbox'``) or the target image (``'image'``); reported as the mean
    over pairs, in percent, as ``pck/PCK@{alpha}_{normalisation}``.

    Inputs: the predictions of
    :meth:`mmboxseg.models.detectors.DiscoBox.predict_correspondence`
    (``pred_keypoints`` in the resized target) with the metainfo of
    :class:`mmboxseg.datasets.transforms.LoadCorrespondencePair`.

    Args:
        alphas (sequence[float]): Defaults to (0.05, 0.1, 0.15).
        normalisations (sequence[str]): ``'bbox'`` and/or ``'image'``.
    """

    default_prefix: Optional[str] = 'pck'

    def __init__(self,
                 alphas: Sequence[float] = (0.05, 0.1, 0.15),
                 normalisations: Sequence[str] = NORMALISATIONS,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        unknown = set(normalisations) - set(NORMALISATIONS)
        if unknown or not normalisations:
            raise ValueError(f'PCKMetric: normalisations must be among '
                             f'{NORMALISATIONS}, got {normalisations}')
        if not alphas or min(alphas) <= 0:
            raise ValueError(f'PCKMetric: alphas must be > 0, got {alphas}')
        self.alphas = tuple(alphas)
        self.normalisations = tuple(normalisations)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'pred_keypoints' not in sample:
                raise KeyError(
                    'PCKMetric: a prediction has no pred_keypoints; test a '
                    'DiscoBox model on LoadCorrespondencePair pairs')
            scale = _numpy(sample['trg_scale'])
            pred = _numpy(sample['pred_keypoints']) / scale
            gt = _numpy(sample['trg_keypoints_ori'])
            valid = np.asarray(sample['keypoint_valid'], dtype=bool)
            sizes = {}
            if 'bbox' in self.normalisations:
                box = sample.get('trg_bbox_ori')
                if box is None:
                    raise ValueError(
                        'PCKMetric: PCK@alpha_bbox needs the target box, '
                        f"but pair {sample.get('img_id')} "
                        f"({sample.get('trg_img_path')}) has no bboxB; "
                        "add it or use normalisations=('image', )")
                box = _numpy(box)
                sizes['bbox'] = max(box[2] - box[0], box[3] - box[1])
            if 'image' in self.normalisations:
                sizes['image'] = float(max(sample['trg_ori_shape']))
            self.results.append({
                (norm, alpha):
                pck(pred, gt, valid, size, alpha)
                for norm, size in sizes.items()
                for alpha in self.alphas
            })

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = {}
        for norm in self.normalisations:
            for alpha in self.alphas:
                values = np.array([r[(norm, alpha)] for r in results])
                values = values[~np.isnan(values)]
                metrics[f'PCK@{alpha}_{norm}'] = float(
                    100 * values.mean()) if len(values) else float('nan')
        print_log(
            f'PCK over {len(results)} pairs: ' +
            ', '.join(f'{k} {v:.1f}' for k, v in metrics.items()),
            logger='current')
        return metrics
