# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_sup_bbox_head import BoxSupBboxHead
from .box_sup_mask_head import BoxSupMaskHead
from .boxcaseg_head import BoxCasegHead
from .boxteacher_mask_head import BoxTeacherMaskHead
from .discobox_solov2_head import DiscoBoxSOLOv2Head
from .sim_mask_head import SIMMaskHead

__all__ = [
    'BoxSupBboxHead', 'BoxSupMaskHead', 'BoxTeacherMaskHead', 'SIMMaskHead',
    'DiscoBoxSOLOv2Head', 'BoxCasegHead'
]
