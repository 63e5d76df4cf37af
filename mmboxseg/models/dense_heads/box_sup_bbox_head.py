# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Tuple

import torch
from mmdet.models.dense_heads import BoxInstBboxHead
from mmengine.structures import InstanceData
from torch import Tensor

from mmboxseg.registry import MODELS

INF = 1e8


@MODELS.register_module()
class BoxSupBboxHead(BoxInstBboxHead):
    """BoxInst/CondInst box head whose FCOS centre sampling also works when
    only some instances have a mask (mixed supervision).

    mmdet 3.3.0's ``CondInstBboxHead`` centres the sampling region of every
    instance on its mask centroid as soon as ``gt_instances.masks`` exists.
    Under mixed supervision (BoxInst Sec. 3.6) the box-only instances carry
    *empty* masks, whose centroid is ``(0, 0)``: they then get no positive
    location at all and are trained as background. This head centres each
    instance on

    - the centroid of its mask where the mask is non-empty (CondInst, and
      AdelaiDet's ``get_sample_region`` with bit masks),
    - the centre of its box otherwise (FCOS; and every instance when no
      masks are loaded, which is what box supervision sees: the box-
      supervision preprocessor drops loaded masks).

    With all masks non-empty or no masks at all it gives exactly mmdet's
    targets (tested).
    """

    @staticmethod
    def sampling_centres(gt_instances: InstanceData) -> Tensor:
        """``[G, 2]`` (x, y) centres of the sampling regions.

        Mask centroids use pixel-index coordinates (the mask's first moment
        over its pixel indices), as mmdet's CondInst does.
        """
        boxes = gt_instances.bboxes
        centres = torch.stack(
            ((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2),
            -1)
        gt_masks = gt_instances.get('masks', None)
        if gt_masks is None or len(gt_instances) == 0:
            return centres
        masks = gt_masks.to_tensor(dtype=torch.bool, device=boxes.device)
        h, w = masks.shape[-2:]
        ys = torch.arange(h, dtype=torch.float32, device=boxes.device)
        xs = torch.arange(w, dtype=torch.float32, device=boxes.device)
        area = masks.sum(dim=(1, 2))
        m00 = area.clamp(min=1e-6)
        cx = (masks * xs).sum(dim=(1, 2)) / m00
        cy = (masks * ys[:, None]).sum(dim=(1, 2)) / m00
        has_mask = (area > 0)[:, None]
        return torch.where(has_mask, torch.stack((cx, cy), -1), centres)

    def _get_targets_single(
        self, gt_instances: InstanceData, points: Tensor,
        regress_ranges: Tensor, num_points_per_lvl: List[int]
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """FCOS targets of one image (mmdet's contract: labels ``[P]``,
        box targets ``[P, 4]``, positive indices, their gt indices)."""
        num_points = points.size(0)
        num_gts = len(gt_instances)
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        if num_gts == 0:
            return gt_labels.new_full((num_points,), self.num_classes), \
                gt_bboxes.new_zeros((num_points, 4)), \
                gt_bboxes.new_zeros((0,), dtype=torch.int64), \
                gt_bboxes.new_zeros((0,), dtype=torch.int64)

        areas = ((gt_bboxes[:, 2] - gt_bboxes[:, 0]) *
                 (gt_bboxes[:, 3] - gt_bboxes[:, 1]))[None].repeat(
                     num_points, 1)
        xs, ys = points[:, 0, None], points[:, 1, None]  # [P, 1]
        boxes = gt_bboxes[None]  # [1, G, 4]
        bbox_targets = torch.stack((xs - boxes[..., 0], ys - boxes[..., 1],
                                    boxes[..., 2] - xs, boxes[..., 3] - ys),
                                   -1)  # [P, G, 4]

        if self.center_sampling:
            centres = self.sampling_centres(gt_instances)[None]  # [1, G, 2]
            radius = torch.cat([
                points.new_full((n, ), float(s * self.center_sample_radius))
                for n, s in zip(num_points_per_lvl, self.strides)
            ])[:, None]  # [P, 1]
            # the centre region, clipped to the box
            x1 = torch.maximum(centres[..., 0] - radius, boxes[..., 0])
            y1 = torch.maximum(centres[..., 1] - radius, boxes[..., 1])
            x2 = torch.minimum(centres[..., 0] + radius, boxes[..., 2])
            y2 = torch.minimum(centres[..., 1] + radius, boxes[..., 3])
            inside = torch.stack((xs - x1, ys - y1, x2 - xs, y2 - ys),
                                 -1).min(-1)[0] > 0
        else:
            inside = bbox_targets.min(-1)[0] > 0

        max_dist = bbox_targets.max(-1)[0]
        in_range = (max_dist >= regress_ranges[:, None, 0]) & (
            max_dist <= regress_ranges[:, None, 1])
        areas[~inside] = INF
        areas[~in_range] = INF
        min_area, min_area_inds = areas.min(dim=1)

        labels = gt_labels[min_area_inds]
        labels[min_area == INF] = self.num_classes
        bbox_targets = bbox_targets[range(num_points), min_area_inds]
        positive = (labels >= 0) & (labels < self.num_classes)
        pos_inds = positive.nonzero().reshape(-1)
        pos_gt_inds = min_area_inds[positive]
        return labels, bbox_targets, pos_inds, pos_gt_inds
