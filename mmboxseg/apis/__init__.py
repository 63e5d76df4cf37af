# Copyright (c) mmboxseg contributors. All rights reserved.
from .correspondence import dense_correspondence, transfer_keypoints

__all__ = ['dense_correspondence', 'transfer_keypoints']
