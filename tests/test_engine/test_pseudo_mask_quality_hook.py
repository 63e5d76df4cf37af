# Copyright (c) mmboxseg contributors. All rights reserved.
"""PseudoMaskQualityHook: mIoU of pseudo masks against ground truth that
only the hook sees."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.logging import MessageHub

from mmboxseg.datasets.transforms import PackDetInputsWithEvalMasks
from mmboxseg.engine.hooks import (PseudoMaskQualityHook, pseudo_mask_ious,
                                   strided_truth)


def test_strided_truth_samples_cell_centres_and_pads():
    masks = torch.zeros(1, 6, 10, dtype=torch.bool)
    masks[0, 2, 6] = True  # centre of cell (0, 1) at stride 4
    masks[0, 3, 7] = True  # not a centre
    out = strided_truth(masks, (3, 4), 4)
    assert out.shape == (1, 3, 4)
    expected = torch.zeros(1, 3, 4, dtype=torch.bool)
    expected[0, 0, 1] = True
    assert out.equal(expected)


def test_ious_by_hand():
    a = torch.zeros(3, 2, 4, dtype=torch.bool)
    b = torch.zeros(3, 2, 4, dtype=torch.bool)
    a[0, :, :2] = True  # 4 cells
    b[0, :, 1:3] = True  # 4 cells, 2 shared -> 2 / 6
    a[1, 0] = True  # disjoint -> 0
    b[1, 1] = True
    # row 2 empty in both -> 1
    assert pseudo_mask_ious(a, b).tolist() == pytest.approx([1 / 3, 0, 1])


def make_record(stride=2):
    # grid 2 x 3 of a padded 4 x 6 input; the image itself is 4 x 5
    masks = torch.zeros(3, 2, 3, dtype=torch.bool)
    masks[0, 0, :2] = True  # pseudo of instance 0: cells (0,0), (0,1)
    masks[1, :, 2] = True  # instance 1: column 2, which is padding
    truth = np.zeros((3, 4, 5), dtype=np.uint8)
    truth[0, 1, 1] = 1  # cell (0, 0) centre (x=1, y=1)
    truth[0, 3, 1] = 1  # cell (1, 0)
    truth[1, 1, 3] = 1  # cell (0, 1)
    # instance 2 has no ground-truth mask (a box-only instance)
    return dict(
        masks=masks,
        valid=torch.tensor([True, True, True]),
        eval_masks=BitmapMasks(truth, 4, 5),
        stride=stride)


def test_score_matches_a_hand_computation():
    rec = make_record()
    # instance 0: pseudo {(0,0), (0,1)}, truth {(0,0), (1,0)} -> 1 / 3
    # instance 1: pseudo {(0,2), (1,2)}, truth {(0,1)} -> 0
    # instance 2: no truth -> not scored
    stats = PseudoMaskQualityHook.score([rec])
    assert stats['pseudo_miou'] == pytest.approx(100 * (1 / 3 + 0) / 2)
    assert stats['pseudo_valid_frac'] == 1.0
    # an invalid (unassigned) row is not scored, but counted
    rec['valid'] = torch.tensor([True, False, True])
    stats = PseudoMaskQualityHook.score([rec, dict(make_record())])
    assert stats['pseudo_miou'] == pytest.approx(100 * (1 / 3 + 1 / 3 + 0) / 3)
    assert stats['pseudo_valid_frac'] == pytest.approx(5 / 6)
    # images without ground truth: nothing to report
    rec['eval_masks'] = None
    assert PseudoMaskQualityHook.score([rec]) is None
    rec['eval_masks'] = BitmapMasks(np.zeros((2, 4, 5), np.uint8), 4, 5)
    with pytest.raises(ValueError, match='3 pseudo masks but 2'):
        PseudoMaskQualityHook.score([rec])


def test_hook_writes_the_message_hub_every_interval():
    hub = MessageHub.get_instance('test_pseudo_mask_quality_hook')
    model = SimpleNamespace(last_pseudo_masks=[make_record()])
    runner = SimpleNamespace(model=model, message_hub=hub, iter=0)
    hook = PseudoMaskQualityHook(interval=2)
    hook.after_train_iter(runner, 0)  # iteration 1: skipped
    assert 'train/pseudo_miou' not in hub.log_scalars
    runner.iter = 1
    hook.after_train_iter(runner, 1)
    assert hub.get_scalar('train/pseudo_miou').current() == pytest.approx(50 /
                                                                          3)
    with pytest.raises(TypeError, match='last_pseudo_masks'):
        hook.after_train_iter(
            SimpleNamespace(model=object(), message_hub=hub, iter=1), 1)
    with pytest.raises(ValueError, match='interval'):
        PseudoMaskQualityHook(interval=0)


def test_pack_puts_masks_where_no_loss_looks():
    h, w = 8, 8
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, :4] = 1
    results = dict(
        img=np.zeros((h, w, 3), np.uint8),
        img_shape=(h, w),
        gt_bboxes=np.array([[0, 0, 8, 4], [1, 1, 3, 3]], np.float32),
        gt_bboxes_labels=np.array([0, 1]),
        gt_ignore_flags=np.array([False, True]),
        gt_masks=BitmapMasks(masks, h, w))
    packed = PackDetInputsWithEvalMasks(meta_keys=('img_shape', ))(results)
    gt = packed['data_samples'].gt_instances
    assert 'masks' not in gt and len(gt.eval_masks) == 1
    assert gt.eval_masks.masks[0].sum() == 32
    assert len(packed['data_samples'].ignored_instances.eval_masks) == 1
