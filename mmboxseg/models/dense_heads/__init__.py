# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_sup_mask_head import BoxSupMaskHead

__all__ = ['BoxSupMaskHead']
