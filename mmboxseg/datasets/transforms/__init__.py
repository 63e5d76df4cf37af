# Copyright (c) mmboxseg contributors. All rights reserved.
from .color_jitter import ColorJitter
from .gaussian_blur import GaussianBlur
from .load_correspondence_pair import PAIR_META_KEYS, LoadCorrespondencePair
from .weak_copy_paste import WeakCopyPaste, masks_to_boxes

__all__ = [
    'ColorJitter', 'GaussianBlur', 'WeakCopyPaste', 'masks_to_boxes',
    'LoadCorrespondencePair', 'PAIR_META_KEYS'
]
