# Copyright (c) mmboxseg contributors. All rights reserved.
from .color_jitter import ColorJitter
from .gaussian_blur import GaussianBlur

__all__ = ['ColorJitter', 'GaussianBlur']
