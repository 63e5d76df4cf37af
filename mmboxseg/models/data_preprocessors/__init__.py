# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_supervision_data_preprocessor import BoxSupDataPreprocessor
from .copy_paste_box_sup_data_preprocessor import \
    CopyPasteBoxSupDataPreprocessor
from .two_view_box_sup_data_preprocessor import TwoViewBoxSupDataPreprocessor

__all__ = [
    'BoxSupDataPreprocessor', 'TwoViewBoxSupDataPreprocessor',
    'CopyPasteBoxSupDataPreprocessor'
]
