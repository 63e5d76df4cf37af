# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Tuple

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from mmboxseg.registry import TRANSFORMS

PAIR_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                  'scale_factor', 'pair_width', 'src_keypoints',
                  'trg_keypoints', 'src_bbox', 'trg_bbox', 'keypoint_valid',
                  'trg_keypoints_ori', 'trg_bbox_ori', 'trg_ori_shape',
                  'trg_scale', 'trg_img_path')


@TRANSFORMS.register_module()
class LoadCorrespondencePair(BaseTransform):
    """Load a source/target pair (from :class:`PFPascalPairDataset`),
    resize both to ``scale`` and put them side by side (source left) as
    one ``img`` of ``(h, 2 w)``, so that mmdet's ``PackDetInputs`` and
    data preprocessor handle it unchanged;
    :meth:`mmboxseg.models.detectors.DiscoBox.predict_correspondence`
    splits it again and runs each half through the network on its own.

    Resizing both images to a fixed size, without keeping the aspect
    ratio, is the usual PF-PASCAL protocol. Keypoints and boxes are
    scaled with the images; the original target keypoints, box and size
    are kept for PCK in original pixels. A missing box becomes the whole
    image.

    Added keys: ``img``, ``img_shape``, ``ori_shape``, ``scale_factor``,
    ``pair_width`` and those of :data:`PAIR_META_KEYS`. Pack with
    ``dict(type='PackDetInputs', meta_keys=PAIR_META_KEYS)``.

    Args:
        scale (tuple): ``(w, h)`` of each image after resizing.
    """

    def __init__(self, scale: Tuple[int, int] = (256, 256)) -> None:
        if len(scale) != 2 or min(scale) < 32:
            raise ValueError(f'LoadCorrespondencePair: scale must be (w, h) '
                             f'with sides >= 32, got {scale}')
        self.scale = tuple(int(s) for s in scale)

    @staticmethod
    def _read(path: str) -> np.ndarray:
        try:
            img = mmcv.imread(path)
        except (FileNotFoundError, OSError) as e:
            raise FileNotFoundError(f'cannot read pair image {path}: {e}')
        if img is None:
            raise FileNotFoundError(f'cannot read pair image {path}')
        return img

    def transform(self, results: dict) -> dict:
        w, h = self.scale
        src = self._read(results['src_img_path'])
        trg = self._read(results['trg_img_path'])
        factors = []
        for img in (src, trg):
            factors.append(
                np.array([w / img.shape[1], h / img.shape[0]], np.float32))
        src_r = mmcv.imresize(src, (w, h))
        trg_r = mmcv.imresize(trg, (w, h))

        def box(value, img):
            if value is None:
                return np.array([0, 0, img.shape[1], img.shape[0]], np.float32)
            return np.asarray(value, np.float32)

        src_box = box(results.get('src_bbox'), src)
        trg_box = box(results.get('trg_bbox'), trg)
        results.update(
            img=np.concatenate([src_r, trg_r], axis=1),
            img_shape=(h, 2 * w),
            ori_shape=(h, 2 * w),
            scale_factor=(1.0, 1.0),
            img_path=results['src_img_path'],
            img_id=results.get('pair_id', 0),
            pair_width=w,
            src_keypoints=results['src_keypoints'] * factors[0],
            trg_keypoints=results['trg_keypoints'] * factors[1],
            trg_keypoints_ori=results['trg_keypoints'],
            src_bbox=src_box * np.tile(factors[0], 2),
            trg_bbox=trg_box * np.tile(factors[1], 2),
            trg_bbox_ori=results.get('trg_bbox'),
            trg_ori_shape=trg.shape[:2],
            trg_scale=factors[1])
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(scale={self.scale})'
