# Copyright (c) mmboxseg contributors. All rights reserved.
import mmcv
import mmdet
import mmengine
from mmengine.utils import digit_version

from .utils.checkpoint_safety import register_checkpoint_safe_globals
from .utils.config_utils import register_config_prefix
from .version import __version__, version_info

MMCV_MIN, MMCV_MAX = '2.0.0rc4', '2.2.0'
MMDET_MIN, MMDET_MAX = '3.0.0', '3.4.0'
MMENGINE_MIN, MMENGINE_MAX = '0.7.1', '1.0.0'


def _check(name: str, version: str, low: str, high: str) -> None:
    if not digit_version(low) <= digit_version(version) < digit_version(high):
        raise AssertionError(
            f'{name}=={version} is used but incompatible with mmboxseg '
            f'{__version__}: please install {name}>={low},<{high}.')


_check('mmcv', mmcv.__version__, MMCV_MIN, MMCV_MAX)
_check('mmdet', mmdet.__version__, MMDET_MIN, MMDET_MAX)
_check('mmengine', mmengine.__version__, MMENGINE_MIN, MMENGINE_MAX)

# `mmboxseg::` in `_base_`, and resume/test with torch's weights_only load.
register_config_prefix()
register_checkpoint_safe_globals()

__all__ = ['__version__', 'version_info']
