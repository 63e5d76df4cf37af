# Copyright (c) mmboxseg contributors. All rights reserved.
from .boxcaseg_segmenter import BoxCasegSegmenter, minmax_normalise
from .boxteacher import BoxTeacher
from .discobox import DiscoBox
from .ema_teacher_boxinst import EMATeacherBoxInst
from .ema_teacher_mixin import EMATeacherMixin
from .sim import SIM

__all__ = [
    'BoxTeacher', 'EMATeacherBoxInst', 'EMATeacherMixin', 'SIM', 'DiscoBox',
    'BoxCasegSegmenter', 'minmax_normalise'
]
