# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_coco_dataset import (AnnotationFileError, BoxCocoDataset,
                               validate_coco_file)
from .box_crop_dataset import BoxCropDataset
from .pf_pascal_pair_dataset import PFPascalPairDataset
from .salient_dataset import SalientDataset
from .samplers import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403

__all__ = [
    'BoxCocoDataset', 'AnnotationFileError', 'validate_coco_file',
    'PFPascalPairDataset', 'BoxCropDataset', 'SalientDataset'
]
