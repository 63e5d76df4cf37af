# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_supervision_data_preprocessor import BoxSupDataPreprocessor

__all__ = ['BoxSupDataPreprocessor']
