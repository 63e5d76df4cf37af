# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_crop_iou_metric import BoxCropIoUMetric, crop_iou_summary, mask_iou
from .iou_thresholds_coco_metric import IoUThresholdsCocoMetric
from .pck_metric import PCKMetric, pck

__all__ = [
    'IoUThresholdsCocoMetric', 'PCKMetric', 'pck', 'BoxCropIoUMetric',
    'crop_iou_summary', 'mask_iou'
]
