# Copyright (c) mmboxseg contributors. All rights reserved.
from .ema_teacher_hook import (EMATeacherHook, ema_momentum, ema_update_,
                               paired_tensors)
from .memory_bank_hook import MemoryBankHook
from .pseudo_mask_quality_hook import (PseudoMaskQualityHook, pseudo_mask_ious,
                                       strided_truth)

__all__ = [
    'EMATeacherHook', 'ema_momentum', 'ema_update_', 'paired_tensors',
    'MemoryBankHook', 'PseudoMaskQualityHook', 'pseudo_mask_ious',
    'strided_truth'
]
