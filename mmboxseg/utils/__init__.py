# Copyright (c) mmboxseg contributors. All rights reserved.
from .checkpoint_safety import (mmengine_checkpoint_safe_globals,
                                register_checkpoint_safe_globals)
from .config_check import ConfigKeyError, check_config_keys, load_config
from .config_utils import (adopt_mmboxseg_scope, config_root, ensure_mim_links,
                           register_config_prefix)
from .safe_pickle import load_safe_pickle
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules', 'adopt_mmboxseg_scope', 'config_root',
    'ensure_mim_links', 'register_config_prefix',
    'register_checkpoint_safe_globals', 'mmengine_checkpoint_safe_globals',
    'load_safe_pickle', 'ConfigKeyError', 'check_config_keys', 'load_config'
]
