# Copyright (c) mmboxseg contributors. All rights reserved.
"""FCOS centre sampling under mixed supervision (issue: box-only instances
got no positive location when some masks were loaded)."""
import numpy as np
import torch
from mmdet.models.dense_heads import BoxInstBboxHead
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from mmboxseg.models.dense_heads import BoxSupBboxHead
from mmboxseg.utils import register_all_modules

register_all_modules()

IMG = 96


def make_heads():
    cfg = dict(
        num_classes=3,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        num_params=169,
        strides=[8, 16, 32],
        regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
        center_sampling=True,
        center_sample_radius=1.5,
        norm_cfg=None)
    return BoxInstBboxHead(**cfg), BoxSupBboxHead(**cfg)


def points_of(head):
    sizes = [(IMG // s, IMG // s) for s in head.strides]
    points = head.prior_generator.grid_priors(
        sizes, dtype=torch.float32, device='cpu')
    counts = [len(p) for p in points]
    ranges = torch.cat([
        torch.tensor(r, dtype=torch.float32)[None].expand(n, 2)
        for r, n in zip(head.regress_ranges, counts)
    ])
    return torch.cat(points), ranges, counts


def instances(with_masks, empty=()):
    """Three objects whose masks fill the left part of their boxes, so the
    mask centroid and the box centre differ."""
    boxes = torch.tensor([[4., 6., 40., 30.], [50., 10., 90., 70.],
                          [20., 50., 60., 92.]])
    gt = InstanceData(bboxes=boxes, labels=torch.tensor([0, 1, 2]))
    if with_masks:
        masks = np.zeros((3, IMG, IMG), dtype=np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            if i not in empty:
                masks[i, y1:y2, x1:x1 + (x2 - x1) // 3] = 1
        gt.masks = BitmapMasks(masks, IMG, IMG)
    return gt


def targets(head, gt):
    points, ranges, counts = points_of(head)
    return head._get_targets_single(gt, points, ranges, counts)


def positives_per_instance(head, gt):
    _, _, _, pos_gt_inds = targets(head, gt)
    return torch.bincount(pos_gt_inds, minlength=len(gt)).tolist()


def test_same_targets_as_mmdet_without_or_with_all_masks():
    mmdet_head, head = make_heads()
    for with_masks in (False, True):
        gt = instances(with_masks)
        for ours, ref in zip(targets(head, gt), targets(mmdet_head, gt)):
            torch.testing.assert_close(ours, ref)
    # the masks matter: centroid sampling picks other locations
    assert targets(head, instances(True))[2].tolist() != targets(
        head, instances(False))[2].tolist()


def test_instances_without_mask_are_sampled_at_their_box_centre():
    mmdet_head, head = make_heads()
    mixed = instances(True, empty=(1, ))
    # mmdet centres the empty mask at (0, 0): the instance gets nothing
    assert positives_per_instance(mmdet_head, mixed)[1] == 0
    ours = positives_per_instance(head, mixed)
    assert all(n > 0 for n in ours)
    # the box-only instance is centred on its box, the masked ones on their
    # masks (the counts also depend on which instance wins a location)
    centres = head.sampling_centres(mixed)
    torch.testing.assert_close(centres[1], torch.tensor([70., 40.]))
    # mask of box 0: columns 4..15 (12 px) -> centroid x = 9.5
    torch.testing.assert_close(centres[0], torch.tensor([9.5, 17.5]))
