# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg's segmenter: bags, MIL values, smoothness, weight transfer and
the joint loss (Eqs. 1-4)."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

from mmboxseg.models import (BoxCasegHead, BoxCasegSegmenter, MILBagLoss,
                             NeighbourSmoothnessLoss, WeightTransfer,
                             minmax_normalise, row_column_bags)
from mmboxseg.utils import register_all_modules

register_all_modules()


def test_row_column_bags_by_hand():
    logits = torch.tensor([[[0.0, 2.0, -1.0], [3.0, -5.0, 1.0]]])  # 2 x 3
    labels = torch.tensor([[[0, 1, 1], [0, 0, 0]]])
    scores, targets = row_column_bags(logits, labels)
    # rows first (max over columns), then columns (max over rows)
    assert scores.tolist() == [[2.0, 3.0, 3.0, 2.0, 1.0]]
    assert targets.tolist() == [[1.0, 0.0, 0.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match='same'):
        row_column_bags(logits, labels[:, :1])


def test_mil_loss_value_by_hand():
    logits = torch.tensor([[[0.0, 2.0, -1.0], [3.0, -5.0, 1.0]]],
                          requires_grad=True)
    labels = torch.tensor([[[0, 1, 1], [0, 0, 0]]])
    loss = MILBagLoss()(logits, labels)

    def sig(x):
        return 1 / (1 + math.exp(-x))

    # bags: rows (2 pos, 3 neg), columns (3 neg, 2 pos, 1 pos)
    expected = -(math.log(sig(2.0)) + math.log(1 - sig(3.0)) +
                 math.log(1 - sig(3.0)) + math.log(sig(2.0)) +
                 math.log(sig(1.0))) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # only the bag maxima receive gradient
    grad = logits.grad[0]
    assert grad[1, 1] == 0 and grad[0, 0] == 0 and grad[0, 2] == 0
    assert grad[0, 1] < 0 and grad[1, 0] > 0 and grad[1, 2] < 0


def test_mil_loss_salient_mask_equals_its_box():
    # a salient mask's bags are those of its tight box
    torch.manual_seed(0)
    logits = torch.randn(1, 8, 8)
    mask = torch.zeros(1, 8, 8)
    mask[0, 2, 3:6] = 1
    mask[0, 3:6, 4] = 1
    box = torch.zeros(1, 8, 8)
    box[0, 2:6, 3:6] = 1
    loss = MILBagLoss()
    assert loss(logits, mask).item() == pytest.approx(loss(logits, box).item())


def test_smoothness_term_by_hand():
    # a single foreground pixel in a 3x3 crop of zeros (logit -inf ~ p 0)
    logits = torch.full((1, 3, 3), -30.0)
    logits[0, 1, 1] = 30.0
    loss = NeighbourSmoothnessLoss(loss_weight=1.0)(logits)
    # centre differs from its 8 neighbours (8 terms of 1), each of those 8
    # pixels differs from the centre once (8 terms), border pixels compare
    # with the zero padding at p ~ 0 (0 terms): 16 / (8 directions * 9 px)
    assert loss.item() == pytest.approx(16 / 72, rel=1e-5)
    weighted = NeighbourSmoothnessLoss()(logits)
    assert weighted.item() == pytest.approx(0.05 * 16 / 72, rel=1e-5)
    # a constant map inside: only the zero padding costs
    flat = torch.full((1, 4, 4), 30.0)
    # border pixels: corners 5 outside neighbours, edges 3: 4*5 + 8*3 = 44
    assert NeighbourSmoothnessLoss(loss_weight=1.0)(flat).item() == \
        pytest.approx(44 / (8 * 16), rel=1e-5)


def test_weight_transfer_shapes_and_detachment():
    torch.manual_seed(0)
    transfer = WeightTransfer(6)
    assert transfer.mlp[0].weight.shape == (24, 6)
    assert transfer.mlp[2].weight.shape == (6, 24)
    assert transfer.mlp[1].negative_slope == 0.1
    # the release's N(0, 0.01) init
    assert transfer.mlp[0].weight.std().item() == pytest.approx(0.01, rel=0.3)
    # a 1x1 conv 6 -> 5: the same MLP maps every output filter (row)
    weight = torch.randn(5, 6, 1, 1, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    new_w, new_b = transfer(weight, bias)
    assert new_w.shape == (5, 6, 1, 1) and new_b.shape == (5, )
    assert torch.allclose(new_w[3].flatten(),
                          transfer.mlp(weight[3].detach().flatten()))
    # b_t = k b + c with k = 1, c = 0 at initialisation
    assert torch.allclose(new_b, bias)
    (new_w.sum() + new_b.sum()).backward()
    assert weight.grad is None and bias.grad is None
    assert transfer.mlp[0].weight.grad.abs().sum() > 0
    assert transfer.bias_scale.grad is not None
    # a conv followed by a norm layer has no bias, and no k, c then
    no_bias = WeightTransfer(18, with_bias=False)
    assert not hasattr(no_bias, 'bias_scale')
    # a 3x3 conv 2 -> 1 has D = 18 weights per filter
    out_w, out_b = no_bias(torch.randn(1, 2, 3, 3), None)
    assert out_w.shape == (1, 2, 3, 3) and out_b is None
    with pytest.raises(ValueError, match='has no bias'):
        transfer(weight, None)
    with pytest.raises(ValueError, match='in_c\\*kh\\*kw = 6'):
        transfer(torch.randn(1, 5, 1, 1), bias)


def tiny_head(alpha=0.6):
    return BoxCasegHead(
        in_channels=[4, 8], in_index=[0, 1], channels=5, alpha=alpha)


def test_head_outputs_and_fusion():
    torch.manual_seed(0)
    head = tiny_head().eval()
    feats = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)]
    out = head(feats)
    for key in ('weak', 'salient', 'transferred', 'fused'):
        assert out[key].shape == (2, 1, 6, 6)
    assert torch.allclose(out['fused'],
                          0.6 * out['salient'] + 0.4 * out['transferred'])
    # the transferred head has no conv weights of its own: both convs
    # come from the weak head through the two MLPs (release topology)
    assert not any(
        isinstance(m, torch.nn.Conv2d) for m in head.transfer_out.modules())
    x = head.fuse_inputs(feats)
    w1, b1 = head.transfer_hidden(head.weak_feat.conv.weight, None)
    assert w1.shape == head.weak_feat.conv.weight.shape == (5, 12, 1, 1)
    hidden = F.relu(head.transfer_norm(F.conv2d(x, w1, b1)))
    w2, b2 = head.transfer_out(head.weak_out.weight, head.weak_out.bias)
    assert torch.allclose(out['transferred'], F.conv2d(hidden, w2, b2))
    # select runs the salient/transferred heads on a subset only
    sub = head(feats, torch.tensor([False, True]))
    assert sub['weak'].shape == (2, 1, 6, 6)
    assert sub['fused'].shape == (1, 1, 6, 6)
    assert torch.allclose(sub['fused'], out['fused'][1:], atol=1e-6)
    with pytest.raises(ValueError, match='alpha'):
        tiny_head(alpha=1.5)


def test_pixel_loss_never_reaches_the_weak_head():
    torch.manual_seed(0)
    head = tiny_head()
    feats = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)]
    out = head(feats)
    target = torch.ones_like(out['fused'])
    F.binary_cross_entropy_with_logits(out['fused'], target).backward()
    for p in list(head.weak_feat.parameters()) + list(
            head.weak_out.parameters()):
        assert p.grad is None
    for module in (head.transfer_hidden, head.transfer_norm, head.transfer_out,
                   head.salient_out):
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in module.parameters())


def tiny_segmenter(**kwargs):
    return BoxCasegSegmenter(
        backbone=dict(
            type='ResNet',
            depth=18,
            out_indices=(0, 1),
            init_cfg=None,
            norm_eval=False),
        decode_head=dict(
            type='BoxCasegHead',
            in_channels=[64, 128],
            in_index=[0, 1],
            channels=8,
            alpha=0.6),
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255]),
        **kwargs)


def crop_sample(source, label, crop_shape=(20, 30)):
    s = DetDataSample(
        metainfo=dict(
            source=source,
            img_shape=label.shape,
            ori_shape=(128, 128),
            crop_shape=crop_shape))
    s.gt_sem_seg = PixelData(sem_seg=label[None].to(torch.uint8))
    return s


def batch(sources, size=32):
    torch.manual_seed(1)
    labels = []
    for k, _ in enumerate(sources):
        lab = torch.zeros(size, size)
        lab[4 + k:20, 6:24 - k] = 1
        labels.append(lab)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
            for _ in sources
        ],
        data_samples=[crop_sample(s, lab) for s, lab in zip(sources, labels)])


def test_joint_loss_terms_follow_eq_4():
    torch.manual_seed(0)
    model = tiny_segmenter()
    model.train()
    data = model.data_preprocessor(
        batch(['box', 'salient', 'box']), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {
        'loss_mil', 'loss_smooth', 'loss_pixel', 'salient_frac'
    }
    assert losses['salient_frac'].item() == pytest.approx(1 / 3)
    # recompute by hand from the heads' upsampled logits; the salient and
    # transferred heads (and their BN statistics) see the salient sample only
    logits = model.head_logits(data['inputs'],
                               torch.tensor([False, True, False]))
    assert logits['fused'].shape[0] == 1
    labels = torch.stack(
        [s.gt_sem_seg.sem_seg[0].float() for s in data['data_samples']])
    assert losses['loss_mil'].item() == pytest.approx(
        MILBagLoss()(logits['weak'], labels).item(), rel=1e-5)
    # the pixel loss sees the salient sample only
    expected_pixel = F.binary_cross_entropy_with_logits(
        logits['fused'][0], labels[1])
    assert losses['loss_pixel'].item() == pytest.approx(
        expected_pixel.item(), rel=1e-5)


def test_box_only_batch_has_zero_pixel_loss_with_graph():
    model = tiny_segmenter()
    model.train()
    data = model.data_preprocessor(batch(['box', 'box']), training=True)
    losses = model(**data, mode='loss')
    assert losses['loss_pixel'].item() == 0
    assert losses['loss_pixel'].requires_grad
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    # the salient head is in the graph (DDP) but gets a zero gradient
    assert model.decode_head.salient_out.weight.grad.abs().sum() == 0
    assert model.decode_head.weak_out.weight.grad.abs().sum() > 0


def test_missing_source_is_a_clear_error():
    model = tiny_segmenter()
    data = model.data_preprocessor(batch(['box', 'salient']), training=True)
    data['data_samples'][0].set_metainfo(dict(source='mask'))
    with pytest.raises(ValueError, match='source'):
        model(**data, mode='loss')


def test_predict_pastes_at_crop_size_with_minmax():
    model = tiny_segmenter().eval()
    data = model.data_preprocessor(batch(['box', 'box']), training=False)
    out = model(**data, mode='predict')
    for sample in out:
        assert sample.pred_sem_seg.sem_seg.shape == (1, 20, 30)
        prob = sample.pred_sem_seg.prob
        # min-max normalised at the input size: both ends are reached
        assert prob.max() <= 1 + 1e-6 and prob.min() >= -1e-6
    probs = torch.tensor([[[0.2, 0.4], [0.6, 0.6]], [[0.5, 0.5], [0.5, 0.5]]])
    norm = minmax_normalise(probs)
    assert torch.allclose(norm[0], torch.tensor([[0.0, 0.5], [1.0, 1.0]]))
    assert norm[1].abs().max() == 0  # constant map: background


def test_unknown_test_cfg_key():
    with pytest.raises(TypeError, match='mask_thres'):
        tiny_segmenter(test_cfg=dict(mask_thres=0.5))
