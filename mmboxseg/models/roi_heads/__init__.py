# Copyright (c) mmboxseg contributors. All rights reserved.
from .mask_heads import ProxyFCNMaskHead

__all__ = ['ProxyFCNMaskHead']
