# Copyright (c) mmboxseg contributors. All rights reserved.
from .correspondence import dense_correspondence, transfer_keypoints
from .inferencer import BoxSegInferencer

__all__ = ['BoxSegInferencer', 'dense_correspondence', 'transfer_keypoints']
