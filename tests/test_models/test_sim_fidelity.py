# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM defaults against the public code (lslrh/SIM): one test (or more) per
row of the fidelity table in configs/sim/README.md. Hand-computed values
re-derive the release's formulas independently of mmboxseg's code."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmboxseg.models.losses import SIMMaskFocalLoss, WeightedBCEDiceLoss
from mmboxseg.models.utils import (assign_to_prototypes, prototype_centroids,
                                   semantic_probability, sim_pseudo_labels)
from mmboxseg.models.utils.self_correction import adaptive_high_threshold
from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO

register_all_modules()

COCO_1X = osp.join(REPO, 'configs/sim/sim_r50_fpn_ms-90k_coco.py')
COCO_3X = osp.join(REPO, 'configs/sim/sim_r101_fpn_ms-270k_coco.py')
PAPER = osp.join(REPO, 'configs/sim/sim_r50_fpn_ms-90k_coco_paper-text.py')
TOY = osp.join(REPO, 'configs/sim/sim_r18_fpn_toy.py')


@pytest.fixture(scope='module')
def coco():
    return Config.fromfile(COCO_1X)


@pytest.fixture(scope='module')
def head():
    cfg = Config.fromfile(TOY)
    torch.manual_seed(0)
    return MODELS.build(cfg.model).mask_head


def hooks(cfg):
    return {h['type']: h for h in cfg.custom_hooks}


# -- item 1: Eq. 1 temperature ----------------------------------------------
def test_eq1_has_no_temperature(coco):
    assert coco.model.mask_head.semantic_tau == 1.0
    # dynamic_mask_head.py: amax(<l2n(f), p>).sigmoid(), no division
    feats = F.normalize(torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]]), dim=0)
    protos = F.normalize(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), dim=-1)
    want = torch.tensor([[[1.0, 1 / math.sqrt(2)]]]).sigmoid()
    torch.testing.assert_close(semantic_probability(feats, protos), want)


# -- item 2: pairwise term with the momentum encoder's feature affinity -----
def test_pairwise_threshold_and_feature_affinity_keys(coco):
    head_cfg = coco.model.mask_head
    assert head_cfg.pairwise_color_thresh == 0.1  # Base-sim.yaml
    assert head_cfg.pairwise_feat_affinity is True
    assert head_cfg.feature_upsample == 'bilinear'


def test_feature_affinity_by_hand(head):
    torch.manual_seed(1)
    feats = torch.randn(head.mask_feature_head.out_channels, 3, 4)
    out = head.feature_affinity(feats, (6, 8))
    assert out.shape == (8, 6, 8)
    # independent: F.interpolate x2, then exp(-||f_i - f_j||) for the
    # neighbour at offset (dy, dx) = (0, +2) (kernel 3, dilation 2: the
    # 5th of the 8 neighbours, the centre removed, row-major)
    up = F.interpolate(
        feats[None], scale_factor=2, mode='bilinear', align_corners=False)[0]
    y, x = 3, 4
    want = torch.exp(-(up[:, y, x] - up[:, y, x + 2]).norm())
    torch.testing.assert_close(out[4, y, x], want)
    # neighbour (-2, -2) of the top-left corner is off the map: 0
    assert out[0, 0, 0] == 0


def test_pairwise_edges_use_colour_times_feature(head):
    """loss_by_feat with the affinity equals the colour-only head given
    the product S_lab * S_feat, and differs from colour only."""
    torch.manual_seed(2)
    h, w = 6, 8
    d = head.mask_feature_head.out_channels
    feats = torch.randn(d, 3, 4) * 0.5
    preds = [torch.randn(2, h, w)]
    gt = InstanceData(
        bboxes=torch.tensor([[0., 0., 31., 23.], [4., 4., 20., 20.]]),
        labels=torch.tensor([0, 0]),
        box_masks=torch.ones(2, h, w, dtype=torch.bool))
    info = InstanceData(
        pos_assigned_gt_inds=torch.tensor([0, 1]),
        scores=torch.zeros(2, head.num_classes),
        centernesses=torch.zeros(2, 1))
    info.set_metainfo(dict(teacher_mask_feats=feats))
    sim = torch.rand(8, h, w) * 0.5 + 0.3  # all >= 0.1
    product = sim * head.feature_affinity(feats, (h, w))
    assert (product < 0.1).any()
    head.eval()  # the SIM losses are training-only; the pairwise term not
    head._iter.fill_(10**6)  # past the pairwise warm-up
    try:
        with_feat = head.loss_by_feat(preds, [gt], [sim], [info])
        head.pairwise_feat_affinity = False
        colour_only = head.loss_by_feat(preds, [gt], [sim], [info])
        by_hand = head.loss_by_feat(preds, [gt], [product], [info])
    finally:
        head.pairwise_feat_affinity = True
        head._iter.zero_()
        head.train()
    torch.testing.assert_close(with_feat['loss_mask_pairwise'],
                               by_hand['loss_mask_pairwise'])
    assert not torch.allclose(with_feat['loss_mask_pairwise'],
                              colour_only['loss_mask_pairwise'])


# -- item 3: pseudo loss ----------------------------------------------------
def release_focal(z, t, w, alpha=0.25, gamma=2.0):
    """dynamic_mask_head.py mask_focal_loss(sigmoid(z), t, w), written out:
    the cross-entropy of sigmoid(p) with p = sigmoid(z)."""
    p = torch.sigmoid(z)
    q = torch.sigmoid(p)
    ce = -(t * torch.log(q) + (1 - t) * torch.log(1 - q)) * w
    p_t = p * t + (1 - p) * (1 - t)
    a_t = alpha * t + (1 - alpha) * (1 - t)
    return (a_t * ce * (1 - p_t)**gamma).sum() / (w.sum() + 1)


def test_focal_on_probabilities_by_hand():
    z = torch.tensor([[[2.0, -1.0, 0.5]], [[0.0, 3.0, -2.0]]],
                     requires_grad=True)
    t = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])
    w = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]]])
    out = SIMMaskFocalLoss(loss_weight=0.3)(z, t, w)
    assert out.dim() == 0
    torch.testing.assert_close(out, 0.3 * release_focal(z, t, w))
    out.backward()
    assert z.grad[0, 0, 2] == 0 and z.grad[1, 0, 1] == 0  # weight 0


def test_pseudo_loss_keys(coco):
    head_cfg = coco.model.mask_head
    assert head_cfg.loss_pseudo == dict(
        type='SIMMaskFocalLoss', loss_weight=0.3)
    assert head_cfg.pseudo_start_iters == 10000
    assert head_cfg.pseudo_ramp_iters == 270000
    # the code ties the ramp to 270k in every schedule, 3x included
    assert Config.fromfile(COCO_3X).model.mask_head.pseudo_ramp_iters == \
        270000
    # the toy schedule scales both
    toy = Config.fromfile(TOY).model.mask_head
    assert (toy.pseudo_start_iters, toy.pseudo_ramp_iters) == (200, 4500)


def test_pseudo_ramp(head):
    head.pseudo_start_iters = 10000
    try:
        for it, want in [(10001, 10001 / 270000), (135000, 0.5),
                         (90000, 1 / 3), (300000, 1.0)]:
            head._iter.fill_(it)
            head.pseudo_ramp_iters = 270000
            assert head.pseudo_ramp() == pytest.approx(want)
            assert head.pseudo_active()
        head._iter.fill_(10000)
        assert not head.pseudo_active()
    finally:
        head._iter.zero_()
        head.pseudo_ramp_iters = 4500
        head.pseudo_start_iters = 200


# -- item 4: adaptive tau_high ----------------------------------------------
def test_adaptive_tau_high_by_hand(coco):
    assert coco.model.mask_head.tau_high == 'adaptive'
    assert tuple(coco.model.mask_head.tau_high_range) == (0.7, 0.8)
    prob = torch.tensor([[[0.9, 0.75, 0.72, 0.3]], [[0.95, 0.9, 0.85, 0.2]],
                         [[0.5, 0.6, 0.65, 0.1]]])
    inside = torch.tensor([[[True, True, True, False]]]).expand(3, -1, -1)
    # ground truth 0: n_pos = 1 -> the 2nd largest in the box, 0.75;
    # 1: n_pos = 3 -> the 4th largest of [.95, .9, .85, 0 (outside)] = 0,
    # clamped to 0.7; 2: n_pos = 0 -> the largest, 0.65 -> 0.7; n_pos
    # beyond the map is clamped to its last pixel
    thr = adaptive_high_threshold(prob, inside, torch.tensor([1, 3, 0]))
    torch.testing.assert_close(thr, torch.tensor([0.75, 0.7, 0.7]))
    prob2 = torch.tensor([[[0.95, 0.9, 0.85, 0.82]]])
    thr = adaptive_high_threshold(prob2,
                                  torch.ones_like(prob2).bool(),
                                  torch.tensor([1]))
    torch.testing.assert_close(thr, torch.tensor([0.8]))  # upper clamp
    # per-ground-truth thresholds in Eq. 7's labels
    semantic = torch.tensor([[[0.8, 0.8]], [[0.8, 0.8]]])
    instance = torch.tensor([[[0.76, 0.9]], [[0.76, 0.9]]])
    box = torch.ones(2, 1, 2, dtype=torch.bool)
    _, pseudo, _ = sim_pseudo_labels(semantic, instance, box,
                                     torch.ones(1, 2, dtype=torch.bool), 0.5,
                                     torch.tensor([0.7, 0.8]), 0.4)
    assert pseudo.tolist() == [[[True, True]], [[False, True]]]


# -- item 5: Eq. 6 mean, bank, paste sampling, paste mask, paste loss -------
def test_self_correction_and_bank_keys(coco):
    assert coco.model.mask_head.iou_mu == 0.0
    cp = coco.model.data_preprocessor.copy_paste
    assert cp.prob == 0.5 and cp.prob_per == 'batch'
    assert cp.replacement is True and cp.score_power == 3.0
    assert (cp.select_ratio, cp.min_select, cp.max_select) == (0.5, 1, 3)
    assert cp.mask_thr == 0.7
    assert hooks(coco)['MemoryBankHook']['bank']['length'] == 50
    assert coco.model.mask_head.paste_source == 'instance'
    assert coco.model.mask_head.loss_paste == dict(
        type='SIMMaskFocalLoss', dice_weight=1.0, loss_weight=1.0)


def test_bank_fields_are_the_instance_map(head):
    """paste mask from P_bar: sim_prob is M_I in the box, the score
    sum(up4(M_I) m) / (|m| + 1) with m = (up4(M_I) > 0.7) * box."""
    inst = torch.zeros(1, 4, 4)
    inst[0, 1:3, 1:3] = 0.9
    box = torch.zeros(1, 4, 4, dtype=torch.bool)
    box[0, :, :2] = True
    gt = InstanceData(
        bboxes=torch.tensor([[0., 0., 7.9, 15.9]]),
        labels=torch.tensor([0]),
        box_masks=box)
    prob = torch.full((1, 4, 4), 0.99)  # M_prob is not what is stored
    pseudo = torch.ones(1, 4, 4, dtype=torch.bool)
    src, scores, valid = head.bank_fields(gt, prob, pseudo, inst,
                                          torch.tensor([True]))
    torch.testing.assert_close(src, inst * box)
    up = F.interpolate(
        inst[None], scale_factor=4, mode='bilinear', align_corners=False)[0]
    m = torch.zeros(1, 16, 16, dtype=torch.bool)
    m[0, :, :8] = True  # the box's pixels, int(x2) = 7 inclusive
    m &= up > 0.7
    want = (up * m).sum() / (m.sum() + 1)
    torch.testing.assert_close(scores, want.reshape(1))
    assert valid.tolist() == [True]


def test_paste_loss_normalised_over_all_proposals():
    """The weighted dice is averaged over every sampled proposal: with one
    pasted proposal among four its gradient is a quarter of the
    one-proposal case (today's mean over pasted ones: equal)."""
    torch.manual_seed(0)
    z = torch.randn(4, 3, 3)
    t = (torch.rand(4, 3, 3) > 0.5).float()
    w = torch.zeros(4, 3, 3)
    w[0] = 1
    full = SIMMaskFocalLoss(dice_weight=1.0)
    focal = SIMMaskFocalLoss(dice_weight=0.0)

    def dice_grad(rows):
        zf = z[:rows].clone().requires_grad_()
        zd = z[:rows].clone().requires_grad_()
        full(zf, t[:rows], w[:rows]).backward()
        focal(zd, t[:rows], w[:rows]).backward()
        return zf.grad[0] - zd.grad[0], zd.grad[0]

    dice4, focal4 = dice_grad(4)
    dice1, focal1 = dice_grad(1)
    # the focal part is normalised by sum(W) + 1: the same in both cases
    torch.testing.assert_close(focal4, focal1)
    torch.testing.assert_close(dice4, dice1 / 4)
    assert dice1.abs().sum() > 0
    # by hand: release dice_coefficient(p, t, w) for row 0, divided by N
    p = z[0].sigmoid()
    d0 = 1 - 2 * (p * t[0]).sum() / (
        p.square().sum() + t[0].square().sum() + 1e-5)
    torch.testing.assert_close(full(z, t, w), release_focal(z, t, w) + d0 / 4)


def test_paper_text_paste_norm_is_per_pasted_proposal():
    cfg = Config.fromfile(PAPER)
    head_cfg = cfg.model.mask_head
    assert head_cfg.paste_norm == 'pasted'
    assert head_cfg.loss_paste == dict(
        type='WeightedBCEDiceLoss', loss_weight=1.0)
    assert head_cfg.loss_pseudo == dict(
        type='WeightedBCEDiceLoss', loss_weight=0.5)
    assert (head_cfg.semantic_tau, head_cfg.iou_mu, head_cfg.tau_high,
            head_cfg.tau_low) == (0.1, 5.0, 0.7, 0.3)
    assert hooks(cfg)['MemoryBankHook']['bank']['length'] == 100
    assert cfg.model.data_preprocessor.copy_paste.select_ratio == 0.25
    # per proposal, zero for un-weighted rows: sum / N_paste is the mean
    loss = WeightedBCEDiceLoss()
    z, t = torch.randn(3, 2, 2), torch.ones(3, 2, 2)
    w = torch.zeros(3, 2, 2)
    w[1] = 1
    assert loss(z, t, w)[[0, 2]].abs().sum() == 0


# -- item 6: centroids and Gumbel assignment --------------------------------
def test_prototype_keys(coco):
    head_cfg = coco.model.mask_head
    assert head_cfg.centroid == 'l2'
    assert head_cfg.assignment == 'gumbel' and head_cfg.gumbel_tau == 0.5
    assert (head_cfg.sinkhorn_epsilon, head_cfg.sinkhorn_iterations) == \
        (0.05, 3)
    assert head_cfg.num_prototypes == 10
    assert head_cfg.prototype_momentum == 0.999
    assert head_cfg.prototype_pixels == 'proposal'


def test_centroid_is_the_normalised_sum():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    cents, counts = prototype_centroids(feats, torch.tensor([0, 0, 1, 1]), 3)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(cents, torch.tensor([[s, s], [s, s], [0.0,
                                                                     0.0]]))
    assert counts.tolist() == [2, 2, 0]
    # Eq. 5's mean stays available
    cents, _ = prototype_centroids(feats, torch.tensor([0, 0, 1, 1]), 3,
                                   'mean')
    torch.testing.assert_close(cents[0], torch.tensor([0.5, 0.5]))


def test_gumbel_assignment_follows_the_release_distribution():
    """sinkhorn.py: F.gumbel_softmax(Q * N, tau=0.5, hard=True): one-hot
    rows drawn from softmax(N Q) (a hard draw is argmax(N Q + g), whatever
    tau); seeded, so deterministic."""
    n = 4000
    row = torch.tensor([1.0, 0.0, 0.0, 0.0])  # N Q_i: a confident pixel
    plan = row.repeat(n, 1) / n
    gen = torch.Generator().manual_seed(0)
    a = assign_to_prototypes(plan, gumbel_tau=0.5, generator=gen)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(a, assign_to_prototypes(plan, 0.5, generator=gen))
    assert a.shape == (n, ) and a.dtype == torch.long
    one_hot = F.one_hot(a, 4)
    assert (one_hot.sum(dim=1) == 1).all()
    freq = one_hot.float().mean(dim=0)
    want = torch.softmax(row, dim=0)  # [0.475, 0.175, 0.175, 0.175]
    torch.testing.assert_close(freq, want, atol=0.025, rtol=0)
    # the same law as torch's gumbel_softmax on these probabilities
    torch.manual_seed(0)
    ref = F.gumbel_softmax(row.repeat(n, 1), tau=0.5, hard=True).mean(0)
    torch.testing.assert_close(freq, ref, atol=0.035, rtol=0)
    # the arg-max path is deterministic
    assert (assign_to_prototypes(plan) == 0).all()


# -- other release settings -------------------------------------------------
def test_momentum_encoder_and_thresholds(coco):
    ema = hooks(coco)['EMATeacherHook']
    assert ema['momentum'] == 0.9999 and ema['buffers'] == 'copy'
    assert ema['ramp'] is False and ema['update'] == 'before_step'
    head_cfg = coco.model.mask_head
    assert head_cfg.tau_low == 0.4 and head_cfg.prototype_pos_thr == 0.7
    assert head_cfg.alpha == 0.5
    assert coco.model.momentum_head_input == 'student'
    assert Config.fromfile(PAPER).model.momentum_head_input == 'teacher'
