# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmboxseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class GaussianBlur(BaseTransform):
    """Gaussian blur with a random sigma, applied with probability ``prob``
    (BoxTeacher's 3x "strongv2" student view: kernel 3, p = 0.5; sigma
    range as ``torchvision.transforms.GaussianBlur``).

    Required Keys: img. Modified Keys: img.

    Args:
        kernel_size (int): Odd kernel size. Defaults to 3.
        sigma (tuple[float, float]): Range of sigma. Defaults to (0.1, 2.0).
        prob (float): Probability of blurring. Defaults to 0.5.
    """

    def __init__(self,
                 kernel_size: int = 3,
                 sigma: Sequence[float] = (0.1, 2.0),
                 prob: float = 0.5) -> None:
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f'GaussianBlur: kernel_size must be odd and '
                             f'positive, got {kernel_size}')
        if len(sigma) != 2 or not 0 < sigma[0] <= sigma[1]:
            raise ValueError(f'GaussianBlur: sigma must be (low, high) with '
                             f'0 < low <= high, got {sigma}')
        if not 0 <= prob <= 1:
            raise ValueError(f'GaussianBlur: prob must be in [0, 1], got '
                             f'{prob}')
        self.kernel_size = kernel_size
        self.sigma = tuple(float(s) for s in sigma)
        self.prob = prob

    @cache_randomness
    def _sample(self):
        if np.random.rand() >= self.prob:
            return None
        return np.random.uniform(*self.sigma)

    def transform(self, results: dict) -> dict:
        sigma = self._sample()
        if sigma is not None:
            k = self.kernel_size
            results['img'] = cv2.GaussianBlur(
                results['img'], (k, k), sigmaX=sigma, sigmaY=sigma)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(kernel_size={self.kernel_size}, '
                f'sigma={self.sigma}, prob={self.prob})')
