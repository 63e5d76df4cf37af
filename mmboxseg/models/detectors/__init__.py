# Copyright (c) mmboxseg contributors. All rights reserved.
from .boxteacher import BoxTeacher
from .ema_teacher_boxinst import EMATeacherBoxInst
from .sim import SIM

__all__ = ['BoxTeacher', 'EMATeacherBoxInst', 'SIM']
