# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_sup_mask_head import BoxSupMaskHead
from .boxteacher_mask_head import BoxTeacherMaskHead

__all__ = ['BoxSupMaskHead', 'BoxTeacherMaskHead']
