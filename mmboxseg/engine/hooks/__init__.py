# Copyright (c) mmboxseg contributors. All rights reserved.
from .ema_teacher_hook import (EMATeacherHook, ema_momentum, ema_update_,
                               paired_tensors)
from .memory_bank_hook import MemoryBankHook

__all__ = [
    'EMATeacherHook', 'ema_momentum', 'ema_update_', 'paired_tensors',
    'MemoryBankHook'
]
