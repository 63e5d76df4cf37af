# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from mmboxseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadSalientMask(BaseTransform):
    """Load the binary object mask of a salient image
    (:class:`mmboxseg.datasets.SalientDataset`).

    The mask file is read as grayscale. With ``thr=None`` (what the
    BoxCaseg configs use) its raw 0-255 values are kept, and
    :class:`BoxCasegSegmenter` divides them by their maximum, as the
    release does (``hybrid_data_loader.py`` ``ToTensor`` l.119-122: soft
    targets on anti-aliased edges). With an integer ``thr`` it is
    binarised at ``thr``, so that anti-aliased or JPEG-ish edges of
    published masks become clean 0/1 labels.

    It is stored as ``gt_seg_map`` because that is the key that mmcv's /
    mmdet's ``Resize`` (nearest interpolation), ``RandomFlip`` and
    mmdet's ``RandomCrop`` transform along with the image, and that
    ``PackDetInputs`` packs (as ``data_sample.gt_sem_seg.sem_seg``,
    ``(1, H, W)``); ``'gt_seg_map'`` is also appended to ``seg_fields`` for
    transforms that iterate that list.

    Required keys: ``seg_map_path``; ``img_shape`` and ``img_path`` when
    the image is already loaded (to check the sizes agree).

    Added keys: ``gt_seg_map`` (``(H, W)`` uint8: 1 = object, 0 =
    background, or the raw values with ``thr=None``), ``seg_fields``.

    Args:
        thr (int, optional): Mask values ``>= thr`` are the object; None
            keeps the raw values. Defaults to 128.
        backend_args (dict, optional): File backend arguments (see
            :func:`mmengine.fileio.get`). Defaults to None (local files).

    Raises:
        ValueError: When the mask's ``(H, W)`` differs from ``img_shape``
            (naming both files and shapes): a mask of another size would be
            resized/cropped out of alignment with its image.
    """

    def __init__(self,
                 thr: Optional[int] = 128,
                 backend_args: Optional[dict] = None) -> None:
        if thr is not None and not 0 < thr <= 255:
            raise ValueError(
                f'LoadSalientMask: thr must be in [1, 255], got {thr}')
        self.thr = thr
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['seg_map_path']
        mask = mmcv.imread(
            path, flag='grayscale', backend_args=self.backend_args)
        if mask is None:
            raise OSError(f'LoadSalientMask: cannot read mask {path}')
        if mask.ndim != 2:  # e.g. a 16-bit or alpha PNG read as is
            raise ValueError(f'LoadSalientMask: mask {path} decodes to shape '
                             f'{mask.shape}, expected (H, W)')
        img_shape = results.get('img_shape')
        if img_shape is not None and tuple(mask.shape) != tuple(img_shape[:2]):
            raise ValueError(
                f'LoadSalientMask: mask {path} is {mask.shape[0]}x'
                f'{mask.shape[1]} (HxW) but image '
                f"{results.get('img_path', '<unknown>')} is "
                f'{img_shape[0]}x{img_shape[1]}')
        if self.thr is None:
            results['gt_seg_map'] = mask.astype(np.uint8)
        else:
            results['gt_seg_map'] = (mask >= self.thr).astype(np.uint8)
        seg_fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in seg_fields:
            seg_fields.append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(thr={self.thr}, '
                f'backend_args={self.backend_args})')
