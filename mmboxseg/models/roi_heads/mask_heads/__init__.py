# Copyright (c) mmboxseg contributors. All rights reserved.
from .proxy_fcn_mask_head import ProxyFCNMaskHead

__all__ = ['ProxyFCNMaskHead']
