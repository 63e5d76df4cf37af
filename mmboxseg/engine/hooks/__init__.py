# Copyright (c) mmboxseg contributors. All rights reserved.
from .ema_teacher_hook import (EMATeacherHook, ema_momentum, ema_update_,
                               paired_tensors)

__all__ = ['EMATeacherHook', 'ema_momentum', 'ema_update_', 'paired_tensors']
