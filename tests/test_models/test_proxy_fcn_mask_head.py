# Copyright (c) mmboxseg contributors. All rights reserved.
"""Proxy Mask R-CNN: low-agreement proxy masks are left out of the mask
loss only (BoxCaseg Sec. 3.4); their boxes still train RPN and box head."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.assigners import MaxIoUAssigner
from mmdet.models.task_modules.samplers import PseudoSampler
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

from mmboxseg.models.roi_heads import ProxyFCNMaskHead
from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules

register_all_modules()

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY = osp.join(REPO, 'configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py')
RCNN_CFG = ConfigDict(mask_size=28)
NUM_CLASSES = 3


def gt_instances(bboxes, labels, agreement=None, size=64):
    """Instances with box-shaped masks (1 inside the box's inner half)."""
    masks = np.zeros((len(bboxes), size, size), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, bboxes):
        w, h = x2 - x1, y2 - y1
        m[int(y1 + h / 4):int(y2 - h / 4), int(x1 + w / 4):int(x2 - w / 4)] = 1
    gt = InstanceData(
        bboxes=torch.tensor(bboxes, dtype=torch.float32),
        labels=torch.tensor(labels),
        masks=BitmapMasks(masks, size, size))
    if agreement is not None:
        gt.agreement = torch.tensor(agreement, dtype=torch.float32)
    return gt


def two_images():
    """Two images, two gts each, with priors whose assignment is known.

    Returns the gts, the sampling results and, for each positive RoI in
    ``mask_preds`` order, the agreement of its gt.  Image 0: agreements
    [0.97, 0.5] (keep, drop); image 1: [0.2, 0.95] (drop, keep at the
    threshold itself).
    """
    gts = [
        gt_instances([[4, 4, 28, 28], [30, 30, 60, 62]], [0, 2], [0.97, 0.5]),
        gt_instances([[10, 2, 40, 30], [2, 36, 30, 60]], [1, 1], [0.2, 0.95]),
    ]
    priors = [
        # two RoIs on gt 0, one on gt 1, one background RoI
        torch.tensor([[4., 4., 28., 28.], [5., 3., 27., 29.],
                      [31., 29., 61., 61.], [40., 2., 62., 20.]]),
        # one RoI on gt 1, two on gt 0
        torch.tensor([[2., 35., 31., 60.], [10., 2., 40., 30.],
                      [11., 3., 39., 31.]]),
    ]
    expected_gt_inds = [[0, 0, 1], [1, 0, 0]]
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.5)
    sampler = PseudoSampler()
    results = []
    for gt, prior, inds in zip(gts, priors, expected_gt_inds):
        pred = InstanceData(priors=prior)
        res = sampler.sample(assigner.assign(pred, gt), pred, gt)
        # the fixture itself: positives in the order we rely on
        assert res.pos_assigned_gt_inds.tolist() == inds
        results.append(res)
    pos_agreement = torch.tensor([0.97, 0.97, 0.5, 0.95, 0.2, 0.2])
    return gts, results, pos_agreement


def head(**kwargs):
    torch.manual_seed(0)
    return ProxyFCNMaskHead(
        num_convs=1,
        in_channels=8,
        conv_out_channels=8,
        num_classes=NUM_CLASSES,
        **kwargs)


def mask_preds(num_pos, channels=NUM_CLASSES):
    torch.manual_seed(1)
    return torch.randn(num_pos, channels, 28, 28, requires_grad=True)


def reference_loss(preds, targets, labels, keep):
    """BCE over the pixels of the kept RoIs, each in its label's channel."""
    idx = torch.nonzero(keep).squeeze(1)
    return F.binary_cross_entropy_with_logits(preds[idx, labels[idx]],
                                              targets[idx])


def test_loss_uses_kept_rois_only_and_their_gradients():
    gts, results, pos_agreement = two_images()
    mask_head = head(drop_thr=0.95)
    preds = mask_preds(6)
    out = mask_head.loss_and_target(preds, results, gts, RCNN_CFG)
    loss = out['loss_mask']['loss_mask']

    targets = FCNMaskHead.get_targets(mask_head, results, gts, RCNN_CFG)
    torch.testing.assert_close(out['mask_targets'], targets)
    # the targets are not trivial: both classes of pixels occur
    assert 0 < targets.mean() < 1
    labels = torch.cat([r.pos_gt_labels for r in results])
    keep = torch.tensor([True, True, False, True, False, False])
    assert torch.equal(pos_agreement >= 0.95, keep)
    expected = reference_loss(preds.detach(), targets, labels, keep)
    torch.testing.assert_close(loss.reshape(()), expected)
    # ... which is not the loss of all positives
    everything = reference_loss(preds.detach(), targets, labels,
                                torch.ones(6, dtype=torch.bool))
    assert abs(everything - expected) > 1e-3

    assert out['loss_mask']['mask_kept_frac'].item() == pytest.approx(3 / 6)
    assert not out['loss_mask']['mask_kept_frac'].requires_grad

    loss.sum().backward()
    grad = preds.grad
    assert torch.all(grad[~keep] == 0)
    for i in torch.nonzero(keep).squeeze(1):
        # the kept RoI's own class channel, and only that, gets gradient
        assert grad[i, labels[i]].abs().sum() > 0
        others = [c for c in range(NUM_CLASSES) if c != labels[i]]
        assert torch.all(grad[i, others] == 0)


def test_class_agnostic_uses_channel_zero():
    gts, results, _ = two_images()
    mask_head = head(drop_thr=0.95, class_agnostic=True)
    preds = mask_preds(6, channels=1)
    out = mask_head.loss_and_target(preds, results, gts, RCNN_CFG)
    keep = torch.tensor([True, True, False, True, False, False])
    expected = reference_loss(preds.detach(), out['mask_targets'],
                              torch.zeros(6, dtype=torch.long), keep)
    torch.testing.assert_close(out['loss_mask']['loss_mask'].reshape(()),
                               expected)


def test_all_dropped_gives_zero_with_graph():
    gts, results, _ = two_images()
    for gt in gts:
        gt.agreement = torch.tensor([0.3, 0.9499])
    preds = mask_preds(6)
    out = head(drop_thr=0.95).loss_and_target(preds, results, gts, RCNN_CFG)
    loss = out['loss_mask']['loss_mask']
    assert loss.item() == 0
    assert loss.requires_grad
    loss.backward()
    assert preds.grad is not None and torch.all(preds.grad == 0)
    assert out['loss_mask']['mask_kept_frac'].item() == 0


@pytest.mark.parametrize('drop_thr', [None, 0])
def test_no_drop_equals_parent_and_needs_no_agreement(drop_thr):
    gts, results, _ = two_images()
    for gt in gts:
        del gt.agreement
    mask_head = head(drop_thr=drop_thr)
    parent = FCNMaskHead(
        num_convs=1,
        in_channels=8,
        conv_out_channels=8,
        num_classes=NUM_CLASSES)
    preds = mask_preds(6)
    out = mask_head.loss_and_target(preds, results, gts, RCNN_CFG)
    ref = parent.loss_and_target(preds, results, gts, RCNN_CFG)
    torch.testing.assert_close(out['loss_mask']['loss_mask'],
                               ref['loss_mask']['loss_mask'])
    assert out['loss_mask']['mask_kept_frac'].item() == 1


def test_missing_or_misaligned_agreement_is_an_error():
    gts, results, _ = two_images()
    del gts[1].agreement
    with pytest.raises(
            ValueError,
            match='LoadProxyAnnotations.*'
            'PackProxyDetInputs.*generate_proxy_masks.py'):
        head().loss_and_target(mask_preds(6), results, gts, RCNN_CFG)

    gts, results, _ = two_images()
    # what a transform that drops boxes but not agreements would leave
    # (InstanceData itself refuses fields of another length)
    gts[0]._data_fields.discard('agreement')
    object.__setattr__(gts[0], 'agreement', torch.tensor([0.97, 0.5, 0.99]))
    gts[0]._data_fields.add('agreement')
    with pytest.raises(ValueError, match='2 gt boxes.*RandomCrop'):
        head().loss_and_target(mask_preds(6), results, gts, RCNN_CFG)

    with pytest.raises(ValueError, match='drop_thr'):
        head(drop_thr=95)


# ---------------------------------------------------------------------------
# the whole detector: dropped masks keep their boxes


def toy_model():
    cfg = Config.fromfile(TOY)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    return model


def batch(agreements, size=64, keep=None):
    """Two images with three boxes each; ``keep`` selects instances."""
    torch.manual_seed(2)
    boxes = [[[4., 6., 30., 28.], [30., 24., 58., 60.], [8., 36., 26., 58.]],
             [[2., 2., 40., 34.], [36., 10., 60., 30.], [20., 40., 52., 62.]]]
    labels = [[0, 1, 3], [2, 2, 0]]
    inputs, samples = [], []
    for i in range(2):
        sel = list(range(3)) if keep is None else keep
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1., 1.)))
        sample.gt_instances = gt_instances([boxes[i][j] for j in sel],
                                           [labels[i][j] for j in sel],
                                           [agreements[i][j]
                                            for j in sel], size)
        sample.ignored_instances = InstanceData(
            bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
        samples.append(sample)
        inputs.append(
            torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
    return dict(inputs=inputs, data_samples=samples)


def run_loss(model, data):
    data = model.data_preprocessor(copy.deepcopy(data), True)
    torch.manual_seed(3)  # the RPN and RoI samplers draw random numbers
    return model(**data, mode='loss')


def test_dropped_masks_still_train_rpn_and_box_head():
    model = toy_model()
    low = run_loss(model, batch([[0.2, 0.9, 0.94], [0.5, 0.0, 0.7]]))
    high = run_loss(model, batch([[1.0, 1.0, 1.0], [0.99, 0.97, 0.95]]))
    assert low['loss_mask'].item() == 0
    assert high['loss_mask'].item() > 0
    box_keys = ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc',
                'loss_bbox')
    for key in box_keys:
        low_v, high_v = low[key], high[key]
        if isinstance(low_v, list):  # RPN losses are per level
            low_v, high_v = torch.stack(low_v), torch.stack(high_v)
        # same boxes, same sampling: identical RPN and box-head losses
        torch.testing.assert_close(low_v, high_v, rtol=0, atol=0)
    assert low['loss_bbox'] > 0 and sum(low['loss_rpn_bbox']) > 0
    # ... whereas removing the low-agreement instances changes them
    removed = run_loss(model,
                       batch([[0.2, 0.9, 0.94], [0.5, 0.0, 0.7]], keep=[0]))
    assert not torch.allclose(
        torch.stack(removed['loss_rpn_bbox']).sum(),
        torch.stack(low['loss_rpn_bbox']).sum())

    # the logged fraction, summed into nothing
    loss, log_vars = model.parse_losses(low)
    assert log_vars['mask_kept_frac'].item() == 0
    _, high_vars = model.parse_losses(high)
    assert high_vars['mask_kept_frac'].item() == 1
    expected = sum(v.mean() if torch.is_tensor(v) else sum(x.mean() for x in v)
                   for k, v in low.items() if 'loss' in k)
    torch.testing.assert_close(loss, expected)

    # the mask head gets zero gradient, the box head does not
    model.zero_grad()
    loss.backward()
    mask_grads = [
        p.grad for p in model.roi_head.mask_head.parameters()
        if p.grad is not None
    ]
    assert mask_grads and all(torch.all(g == 0) for g in mask_grads)
    assert model.roi_head.bbox_head.fc_reg.weight.grad.abs().sum() > 0
    assert model.rpn_head.rpn_reg.weight.grad.abs().sum() > 0


def test_mixed_agreement_in_detector_logs_fraction():
    model = toy_model()
    out = run_loss(model, batch([[1.0, 0.1, 1.0], [0.1, 0.1, 0.96]]))
    frac = out['mask_kept_frac'].item()
    assert 0 < frac < 1
    assert out['loss_mask'].item() > 0
