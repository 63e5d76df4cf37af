# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmboxseg.registry import TRANSFORMS

Range = Union[float, Sequence[float]]


def _factor_range(value: Range, name: str, centre: float,
                  lower: float) -> Optional[Tuple[float, float]]:
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f'ColorJitter: {name} must be >= 0, got {value}')
        low, high = centre - value, centre + value
    else:
        low, high = value
    low = max(low, lower)
    if low > high:
        raise ValueError(f'ColorJitter: empty {name} range ({low}, {high})')
    return None if low == high == centre else (float(low), float(high))


def _gray(img: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of a float BGR image, ``[H, W, 1]``."""
    return (img[..., 0:1] * 0.114 + img[..., 1:2] * 0.587 +
            img[..., 2:3] * 0.299)


@TRANSFORMS.register_module()
class ColorJitter(BaseTransform):
    """torchvision-style colour jitter on uint8 BGR images, applied with
    probability ``prob`` (BoxTeacher's student view: (0.4, 0.4, 0.4, 0.1)
    with p = 0.8).

    Brightness, contrast, saturation and hue are applied in a random order,
    each with a factor drawn uniformly from its range, as
    ``torchvision.transforms.ColorJitter``: brightness scales the image;
    contrast blends with the mean grey level; saturation blends with the
    grey image; hue shifts the HSV hue by a fraction of a full turn.
    Geometry is untouched, so boxes stay valid.

    Required Keys: img. Modified Keys: img.

    Args:
        brightness, contrast, saturation (float | tuple): ``x`` means
            ``[max(0, 1 - x), 1 + x]``; a pair is the range itself.
        hue (float | tuple): ``x`` in [0, 0.5] means ``[-x, x]``.
        prob (float): Probability of jittering at all. Defaults to 1.
    """

    def __init__(self,
                 brightness: Range = 0.,
                 contrast: Range = 0.,
                 saturation: Range = 0.,
                 hue: Range = 0.,
                 prob: float = 1.0) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'ColorJitter: prob must be in [0, 1], got '
                             f'{prob}')
        self.brightness = _factor_range(brightness, 'brightness', 1., 0.)
        self.contrast = _factor_range(contrast, 'contrast', 1., 0.)
        self.saturation = _factor_range(saturation, 'saturation', 1., 0.)
        self.hue = _factor_range(hue, 'hue', 0., -0.5)
        if self.hue is not None and self.hue[1] > 0.5:
            raise ValueError(f'ColorJitter: hue must be within [-0.5, 0.5], '
                             f'got {self.hue}')
        self.prob = prob

    @cache_randomness
    def _sample(self) -> Optional[list]:
        if np.random.rand() >= self.prob:
            return None
        ops = []
        for name in np.random.permutation(4):
            name = ('brightness', 'contrast', 'saturation', 'hue')[name]
            bounds = getattr(self, name)
            if bounds is not None:
                ops.append((name, np.random.uniform(*bounds)))
        return ops

    @staticmethod
    def apply(img: np.ndarray, ops: list) -> np.ndarray:
        """Apply ``[(name, factor), ...]`` in order to a uint8 BGR image."""
        out = img.astype(np.float32)
        for name, factor in ops:
            if name == 'brightness':
                out = out * factor
            elif name == 'contrast':
                out = out * factor + (1 - factor) * _gray(out).mean()
            elif name == 'saturation':
                out = out * factor + (1 - factor) * _gray(out)
            else:
                hsv = cv2.cvtColor(
                    np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
                hue = hsv[..., 0].astype(np.int32) + int(round(factor * 180))
                hsv[..., 0] = np.mod(hue, 180).astype(np.uint8)
                out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
            out = np.clip(out, 0, 255)
        return np.round(out).astype(np.uint8)

    def transform(self, results: dict) -> dict:
        ops = self._sample()
        if ops:
            results['img'] = self.apply(results['img'], ops)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'hue={self.hue}, prob={self.prob})')
