# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_supervision import (color_similarity, downsample_uint8_images,
                              strided_box_masks, strided_image_masks)
from .color_space import rgb_to_lab
from .frozen_copy import freeze_as_buffers
from .pseudo_mask_assignment import assign_pseudo_masks, mask_aware_score

__all__ = [
    'rgb_to_lab', 'strided_box_masks', 'strided_image_masks',
    'color_similarity', 'downsample_uint8_images', 'freeze_as_buffers',
    'assign_pseudo_masks', 'mask_aware_score'
]
