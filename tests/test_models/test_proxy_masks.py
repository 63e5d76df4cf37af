# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg's proxy masks: paste back, smaller-object-better merge, proxy box
agreement and the crop metric."""
import numpy as np
import pytest
import torch

from mmboxseg.evaluation.metrics import crop_iou_summary, mask_iou
from mmboxseg.models.utils import (merge_smaller_first, paste_crop_probs,
                                   proxy_box_agreement)


def test_merge_gives_shared_pixels_to_the_smaller_box():
    # a person (small box) on a sofa (large box): both masks claim the
    # overlap; a third box elsewhere is untouched
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:9, 1:11] = True  # sofa, box 10 x 8
    masks[1, 1:6, 4:8] = True  # person, box 4 x 6
    masks[2, 8:10, 0:2] = True
    boxes = torch.tensor([[1, 1, 11, 9], [4, 0, 8, 6], [0, 8, 2, 10]],
                         dtype=torch.float32)
    merged = merge_smaller_first(masks, boxes)
    overlap = masks[0] & masks[1]
    assert overlap.sum() == 16
    assert merged[1].equal(masks[1])  # the smaller keeps everything
    assert merged[0].equal(masks[0] & ~masks[1] & ~masks[2])
    # the third mask overlaps the sofa at (8, 1): the tiny box wins
    assert merged[2].equal(masks[2])
    assert not merged[0, 8, 1]
    # disjoint and subsets
    assert (merged.sum(0) <= 1).all()
    assert (merged <= masks).all()
    # order independent
    perm = torch.tensor([2, 0, 1])
    assert merge_smaller_first(masks[perm], boxes[perm]).equal(merged[perm])


def test_merge_ties_follow_the_painting_order():
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    boxes = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4]], dtype=torch.float32)
    merged = merge_smaller_first(masks, boxes)
    # equal areas: the release paints argsort(areas)[::-1], so the earlier
    # instance is painted last and wins
    assert merged[0].all() and not merged[1].any()
    # a third, smaller box still beats both
    masks3 = torch.ones(3, 4, 4, dtype=torch.bool)
    boxes3 = torch.cat([boxes, boxes.new_tensor([[0, 0, 2, 4]])])
    merged3 = merge_smaller_first(masks3, boxes3)
    assert merged3[2].all() and not merged3[1].any()
    assert not merged3[0].any()
    with pytest.raises(ValueError, match='2 masks but 1 boxes'):
        merge_smaller_first(masks, boxes[:1])


def test_agreement_and_drop_by_hand():
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, 2:8, 2:8] = True  # tight box = GT box
    masks[1, 2:8, 2:5] = True  # half of the GT box 2..8 x 2..8
    boxes = torch.tensor([[2, 2, 8, 8], [2, 2, 8, 8], [0, 0, 5, 5]],
                         dtype=torch.float32)
    agreement = proxy_box_agreement(masks, boxes)
    # tight box of mask 1: [2, 2, 5, 8] -> IoU 18 / 36
    assert agreement.tolist() == pytest.approx([1.0, 0.5, 0.0])
    # a mask with a hole keeps its tight box: agreement bounds mask IoU
    masks[0, 4:6, 4:6] = False
    assert proxy_box_agreement(masks[:1], boxes[:1]).item() == 1.0
    # dropping at 0.95 keeps only the first
    assert (agreement >= 0.95).tolist() == [True, False, False]
    assert proxy_box_agreement(masks[:0], boxes[:0]).shape == (0, )


def test_agreement_on_the_pixel_grid_of_a_fractional_box():
    from mmboxseg.datasets.transforms.box_jitter_crop import crop_region
    box = [2.4, 1.6, 13.5, 12.3]  # 11.1 x 10.7 box
    region = crop_region(box, (16, 16))
    assert region.tolist() == [2, 1, 14, 13]
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, 1:13, 2:14] = True  # fills every pixel the box touches
    grid = proxy_box_agreement(mask, torch.tensor([region]).float())
    assert grid.item() == 1.0
    # against the float box the same perfect mask would lose ~18 %
    raw = proxy_box_agreement(mask, torch.tensor([box]))
    assert raw.item() == pytest.approx(11.1 * 10.7 / 144, rel=1e-5)


def test_paste_back_resizes_into_the_region():
    probs = torch.ones(2, 32, 32)
    regions = torch.tensor([[2, 3, 7, 5], [0, 0, 1, 1]])
    pasted = paste_crop_probs(probs, regions, (6, 8))
    assert pasted.shape == (2, 6, 8)
    expected = torch.zeros(6, 8)
    expected[3:5, 2:7] = 1
    assert torch.allclose(pasted[0], expected)
    assert pasted[1].sum() == 1 and pasted[1, 0, 0] == 1


def test_crop_metric_by_hand():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[:, :2] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    ious = [0.9, 0.6, 0.3, 0.8]
    labels = [0, 0, 0, 1]
    out = crop_iou_summary(ious, labels)
    assert out['mIoU*'] == pytest.approx(100 * (0.6 + 0.8) / 2)
    assert out['mIoU'] == pytest.approx(100 * 2.6 / 4)
    assert out['IoU@50'] == pytest.approx(75.0)
    assert out['IoU@75'] == pytest.approx(50.0)
    # the thresholds include their bound (release: iou >= 0.5)
    edge = crop_iou_summary([0.5, 0.75, 0.49], [0, 0, 0])
    assert edge['IoU@50'] == pytest.approx(200 / 3)
    assert edge['IoU@75'] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match='no crops'):
        crop_iou_summary([], [])


def test_crop_metric_process():
    from mmengine.structures import PixelData

    from mmboxseg.evaluation.metrics import BoxCropIoUMetric
    metric = BoxCropIoUMetric()
    gt = np.zeros((3, 4), np.uint8)
    gt[:, :2] = 1
    pred = torch.zeros(1, 3, 4, dtype=torch.bool)
    pred[0, :, 1:3] = True
    sample = dict(
        gt_crop_mask=gt,
        bbox_label=2,
        pred_sem_seg=PixelData(sem_seg=pred).to_dict())
    metric.process({}, [sample])
    assert metric.results == [(pytest.approx(3 / 9), 2)]
    res = metric.compute_metrics(metric.results)
    assert res['mIoU*'] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match='differ in size'):
        metric.process({}, [dict(sample, gt_crop_mask=gt[:2])])
    with pytest.raises(KeyError, match='gt_crop_mask'):
        metric.process(
            {}, [dict(bbox_label=0, pred_sem_seg=sample['pred_sem_seg'])])
