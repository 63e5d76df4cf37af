# Copyright (c) mmboxseg contributors. All rights reserved.
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmboxseg.registry import TRANSFORMS


def crop_region(box: Sequence[float], img_hw: Tuple[int, int]) -> np.ndarray:
    """Integer ``[x0, y0, x1, y1]`` pixel region (exclusive end) covering an
    xyxy box, clamped to the image and at least one pixel wide and high."""
    h, w = img_hw
    x0 = min(max(int(math.floor(box[0])), 0), w - 1)
    y0 = min(max(int(math.floor(box[1])), 0), h - 1)
    x1 = max(min(int(math.ceil(box[2])), w), x0 + 1)
    y1 = max(min(int(math.ceil(box[3])), h), y0 + 1)
    return np.array([x0, y0, x1, y1], dtype=np.int64)


def box_label_map(box: Sequence[float], region: np.ndarray) -> np.ndarray:
    """``[h, w]`` uint8 map of the region, 1 on pixels the box overlaps."""
    x0, y0, x1, y1 = (int(v) for v in region)
    bx = crop_region(box, (y1, x1))  # the box's pixels, image coordinates
    label = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    label[max(bx[1] - y0, 0):max(bx[3] - y0, 0),
          max(bx[0] - x0, 0):max(bx[2] - x0, 0)] = 1
    return label


def jitter_box(box: Sequence[float], rng, center_jitter: float,
               scale_range: Tuple[float, float]) -> np.ndarray:
    """BoxCaseg's ``box_augmentation`` (Sec. 3.2.2) as released
    (``bbox_broaden``): the centre moves by ``U(-j, j)`` *half* sizes and
    each half size is scaled by ``U(lo, hi)``, per axis. The paper's
    listing moves the centre by whole sizes; the release is followed."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    dx, dy = rng.uniform(-center_jitter, center_jitter, size=2)
    sx, sy = rng.uniform(*scale_range, size=2)
    cx, cy = cx + dx * hw, cy + dy * hh
    return np.array([cx - sx * hw, cy - sy * hh, cx + sx * hw, cy + sy * hh])


@TRANSFORMS.register_module()
class BoxJitterCrop(BaseTransform):
    """Crop one box (jittered in training) out of the image.

    Required keys: ``img``, ``crop_box`` (xyxy); optional ``gt_mask`` (the
    instance's COCO polygon or RLE, evaluation only).

    Added/modified keys:

    - ``img``: the crop; ``img_shape``: its size.
    - ``gt_seg_map``: ``[h, w]`` uint8 box label map of the crop (1 inside
      the *original* box; a jittered crop smaller than the box is all ones
      and has no negative bags, as in the release); registered in
      ``seg_fields`` so Resize/Flip/Crop follow it.
    - ``crop_region``: integer ``[x0, y0, x1, y1]`` in the image;
      ``crop_shape``: ``(h, w)`` of the crop before resizing, where
      predictions are pasted back.
    - ``gt_crop_mask``: ``[h, w]`` uint8 ground-truth mask of the crop, only
      if ``gt_mask`` is given.

    Args:
        jitter (bool): Jitter the box (training) or crop it exactly
            (evaluation, proxy masks). Defaults to True.
        center_jitter (float): Defaults to 0.25.
        scale_range (tuple[float, float]): Defaults to (0.5, 1.5).
        seed (int, optional): Seeds this transform's generator (tests).
    """

    def __init__(self,
                 jitter: bool = True,
                 center_jitter: float = 0.25,
                 scale_range: Tuple[float, float] = (0.5, 1.5),
                 seed: Optional[int] = None) -> None:
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f'bad scale_range {scale_range}')
        self.jitter = jitter
        self.center_jitter = center_jitter
        self.scale_range = tuple(scale_range)
        self.rng = None if seed is None else np.random.default_rng(seed)

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        box = results['crop_box']
        if self.jitter:
            # without a seed, draw from np.random: mmengine reseeds it in
            # every worker from the config's randomness seed
            rng = np.random if self.rng is None else self.rng
            crop_box = jitter_box(box, rng, self.center_jitter,
                                  self.scale_range)
        else:
            crop_box = box
        region = crop_region(crop_box, (h, w))
        x0, y0, x1, y1 = (int(v) for v in region)
        results['img'] = img[y0:y1, x0:x1]
        results['img_shape'] = results['img'].shape[:2]
        results['gt_seg_map'] = box_label_map(box, region)
        results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in results['seg_fields']:
            results['seg_fields'].append('gt_seg_map')
        results['crop_region'] = region
        results['crop_shape'] = (y1 - y0, x1 - x0)
        if results.get('gt_mask') is not None:
            mask = decode_instance_mask(results['gt_mask'], h, w)
            results['gt_crop_mask'] = mask[y0:y1, x0:x1]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(jitter={self.jitter}, center_jitter='
                f'{self.center_jitter}, scale_range={self.scale_range})')


def decode_instance_mask(ann, h: int, w: int) -> np.ndarray:
    """``[h, w]`` uint8 mask of a COCO ``segmentation`` (polygons,
    uncompressed or compressed RLE)."""
    from pycocotools import mask as mask_utils
    if isinstance(ann, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(ann, h, w))
    elif isinstance(ann.get('counts'), list):
        rle = mask_utils.frPyObjects(ann, h, w)
    else:
        rle = ann
    return mask_utils.decode(rle).astype(np.uint8)
