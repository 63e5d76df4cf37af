# Copyright (c) mmboxseg contributors. All rights reserved.
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from mmboxseg.models.dense_heads import BoxSupMaskHead
from mmboxseg.models.losses import BoxProjectionLoss, PairwiseAffinityLoss
from mmboxseg.utils import register_all_modules

register_all_modules()


def make_head(head_type=BoxSupMaskHead, **kwargs):
    """A small 8-channel head (BoxSupMaskHead or a subclass)."""
    cfg = dict(
        num_layers=3,
        feat_channels=8,
        size_of_interest=8,
        mask_out_stride=4,
        topk_masks_per_img=64,
        warmup_iters=10,
        mask_feature_head=dict(
            in_channels=16,
            feat_channels=16,
            start_level=0,
            end_level=2,
            out_channels=16,
            mask_stride=8,
            num_stacked_convs=1,
            norm_cfg=None))
    cfg.update(kwargs)
    return head_type(**cfg)


class ExplodingMasks:
    """Stand-in for gt masks that fails on any use."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, item):
        raise AssertionError('box supervision read gt masks')

    def to_tensor(self, *args, **kwargs):
        raise AssertionError('box supervision read gt masks')


def test_adelaidet_head_size_and_dynamic_params():
    head = make_head()
    # (16 + 2) * 8 + 8 + 8 * 8 + 8 + 8 + 1
    assert head.num_params == 233
    params = torch.randn(3, 233)
    weights, biases = head.parse_dynamic_params(params)
    assert [tuple(w.shape) for w in weights] == [(24, 18, 1, 1), (24, 8, 1, 1),
                                                 (3, 8, 1, 1)]
    assert [tuple(b.shape) for b in biases] == [(24, ), (24, ), (3, )]
    feats = torch.randn(1, 3 * 18, 5, 6)
    out = head.dynamic_conv_forward(feats, weights, biases, 3)
    assert out.shape == (1, 3, 5, 6)
    # instance 1 only sees its own channels and parameters
    single_w, single_b = head.parse_dynamic_params(params[1:2])
    single = head.dynamic_conv_forward(feats[:, 18:36], single_w, single_b, 1)
    torch.testing.assert_close(out[:, 1:2], single)


def reference_topk(gt_inds, scores, ctr, topk):
    """mmdet 3.3.0's per-ground-truth loop."""
    keep = []
    k = max(int(topk / len(gt_inds.unique())), 1)
    for g in gt_inds.unique():
        idx = (gt_inds == g).nonzero().flatten()
        if len(idx) > k:
            s = scores[idx].sigmoid().max(1)[0] * ctr[idx].sigmoid().flatten()
            idx = idx[s.topk(k)[1]]
        keep += idx.tolist()
    return sorted(keep)


@pytest.mark.parametrize('topk', [4, 9, 64])
def test_topk_sampling_matches_mmdet_loop(topk):
    torch.manual_seed(topk)
    gt_inds = torch.randint(0, 3, (40, ))
    info = InstanceData(
        pos_assigned_gt_inds=gt_inds,
        scores=torch.randn(40, 5),
        centernesses=torch.randn(40, 1))
    head = make_head(topk_masks_per_img=topk)
    got = sorted(head.sample_positives(info).tolist())
    assert got == reference_topk(gt_inds, info.scores, info.centernesses, topk)


def make_inputs(num_pos=4, h=12, w=16, with_masks=None):
    torch.manual_seed(0)
    boxes = torch.tensor([[4.0, 4.0, 30.0, 20.0], [20.0, 10.0, 60.0, 44.0]])
    box_masks = torch.zeros(2, h, w, dtype=torch.bool)
    box_masks[0, 1:5, 1:8] = True
    box_masks[1, 3:11, 5:15] = True
    gt = InstanceData(
        bboxes=boxes, labels=torch.tensor([0, 1]), box_masks=box_masks)
    if with_masks is not None:
        gt.masks = with_masks
    pos = InstanceData(
        pos_assigned_gt_inds=torch.tensor([0, 1, 1, 0])[:num_pos],
        scores=torch.randn(num_pos, 3),
        centernesses=torch.randn(num_pos, 1))
    preds = torch.randn(num_pos, h, w, requires_grad=True)
    similarity = torch.rand(8, h, w)
    return preds, gt, similarity, pos


def test_box_losses_are_the_loss_modules_and_never_read_masks():
    preds, gt, similarity, pos = make_inputs(with_masks=ExplodingMasks(2))
    head = make_head(warmup_iters=4).train()
    losses = head.loss_by_feat([preds], [gt], [similarity], [pos])
    assert set(losses) == {'loss_mask_project', 'loss_mask_pairwise'}
    gt_inds = pos.pos_assigned_gt_inds
    box = gt.box_masks[gt_inds]
    ref_prj = BoxProjectionLoss()(preds, box)
    edges = (similarity >= 0.3)[None] & box[:, None]
    ref_pair = PairwiseAffinityLoss()(preds, edges.float())
    torch.testing.assert_close(losses['loss_mask_project'], ref_prj)
    # first training step: warm-up factor 1 / 4 (AdelaiDet counts from 1)
    torch.testing.assert_close(losses['loss_mask_pairwise'], ref_pair / 4)
    sum(losses.values()).backward()
    assert preds.grad is not None and preds.grad.abs().sum() > 0
    for step in range(2, 7):
        losses = head.loss_by_feat([preds], [gt], [similarity], [pos])
        factor = min(step / 4, 1.0)
        torch.testing.assert_close(losses['loss_mask_pairwise'],
                                   ref_pair * factor)
    assert int(head._iter) == 6
    assert '_iter' in head.state_dict()


def test_mixed_supervision_splits_instances_by_mask():
    h, w = 12, 16
    full = torch.zeros(2, h * 4, w * 4, dtype=torch.uint8)
    full[0, 6:18, 6:26] = 1  # instance 0 has a mask; instance 1 does not
    preds, gt, similarity, pos = make_inputs(
        with_masks=BitmapMasks(full.numpy(), h * 4, w * 4))
    head = make_head(supervision='mixed', warmup_iters=0).train()
    losses = head.loss_by_feat([preds], [gt], [similarity], [pos])
    assert set(losses) == {
        'loss_mask_project', 'loss_mask_pairwise', 'loss_mask'
    }
    gt_inds = pos.pos_assigned_gt_inds
    has_mask = gt_inds == 0
    target = full[:, 2::4, 2::4].bool()[gt_inds]
    ref_mask = head.loss_mask(
        preds[has_mask], target[has_mask].float(),
        reduction_override='none').sum() / has_mask.sum()
    box = gt.box_masks[gt_inds][~has_mask]
    ref_prj = BoxProjectionLoss()(preds[~has_mask], box)
    edges = (similarity >= 0.3)[None] & box[:, None]
    ref_pair = PairwiseAffinityLoss()(preds[~has_mask], edges.float())
    torch.testing.assert_close(losses['loss_mask'], ref_mask)
    torch.testing.assert_close(losses['loss_mask_project'], ref_prj)
    torch.testing.assert_close(losses['loss_mask_pairwise'], ref_pair)


def test_mask_mode_is_condinst_dice():
    h, w = 12, 16
    full = torch.zeros(2, h * 4, w * 4, dtype=torch.uint8)
    full[0, 6:18, 6:26] = 1
    full[1, 20:40, 30:60] = 1
    preds, gt, _, pos = make_inputs(
        with_masks=BitmapMasks(full.numpy(), h * 4, w * 4))
    del gt.box_masks
    head = make_head(supervision='mask').train()
    losses = head.loss_by_feat([preds], [gt], [None], [pos])
    target = full[:, 2::4, 2::4].float()[pos.pos_assigned_gt_inds]
    ref = head.loss_mask(preds, target, reduction_override='none').sum() / 4
    assert set(losses) == {'loss_mask'}
    torch.testing.assert_close(losses['loss_mask'], ref)


def test_no_positives_gives_zero_losses_with_graph():
    preds, gt, similarity, pos = make_inputs(num_pos=0)
    head = make_head().train()
    losses = head.loss_by_feat([preds], [gt], [similarity], [pos])
    for value in losses.values():
        assert value.item() == 0.0 and value.requires_grad


def test_missing_preprocessor_outputs_are_a_clear_error():
    head = make_head()
    with pytest.raises(ValueError, match='supervision'):
        make_head(supervision='boxes')
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4))
    with pytest.raises(KeyError, match='BoxSupDataPreprocessor'):
        head.loss((torch.zeros(1, 16, 8, 8), ), [sample],
                  positive_infos=[InstanceData()])
