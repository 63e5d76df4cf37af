# Copyright (c) mmboxseg contributors. All rights reserved.
from .iou_thresholds_coco_metric import IoUThresholdsCocoMetric
from .pck_metric import PCKMetric, pck

__all__ = ['IoUThresholdsCocoMetric', 'PCKMetric', 'pck']
