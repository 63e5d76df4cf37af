# Copyright (c) mmboxseg contributors. All rights reserved.
from .checkpoint_safety import (mmengine_checkpoint_safe_globals,
                                register_checkpoint_safe_globals)
from .config_utils import (adopt_mmboxseg_scope, config_root, ensure_mim_links,
                           register_config_prefix)
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules', 'adopt_mmboxseg_scope', 'config_root',
    'ensure_mim_links', 'register_config_prefix',
    'register_checkpoint_safe_globals', 'mmengine_checkpoint_safe_globals'
]
