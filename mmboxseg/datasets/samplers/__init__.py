# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_salient_ratio_sampler import BoxSalientRatioSampler

__all__ = ['BoxSalientRatioSampler']
