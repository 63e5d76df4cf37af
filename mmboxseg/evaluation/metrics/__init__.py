# Copyright (c) mmboxseg contributors. All rights reserved.
from .iou_thresholds_coco_metric import IoUThresholdsCocoMetric

__all__ = ['IoUThresholdsCocoMetric']
