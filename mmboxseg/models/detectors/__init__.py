# Copyright (c) mmboxseg contributors. All rights reserved.
from .boxteacher import BoxTeacher

__all__ = ['BoxTeacher']
