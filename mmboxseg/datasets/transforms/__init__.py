# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_jitter_crop import BoxJitterCrop
from .color_jitter import ColorJitter
from .gaussian_blur import GaussianBlur
from .load_correspondence_pair import PAIR_META_KEYS, LoadCorrespondencePair
from .load_proxy_annotations import LoadProxyAnnotations, PackProxyDetInputs
from .load_salient_mask import LoadSalientMask
from .pack_eval_masks import PackDetInputsWithEvalMasks, eval_mask_pipeline
from .weak_copy_paste import WeakCopyPaste, masks_to_boxes

__all__ = [
    'BoxJitterCrop', 'ColorJitter', 'GaussianBlur', 'WeakCopyPaste',
    'masks_to_boxes', 'LoadCorrespondencePair', 'PAIR_META_KEYS',
    'LoadProxyAnnotations', 'PackProxyDetInputs', 'LoadSalientMask',
    'PackDetInputsWithEvalMasks', 'eval_mask_pipeline'
]
