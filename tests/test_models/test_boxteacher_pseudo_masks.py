# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxTeacher: Alg. 1, the mask-aware score (Eq. 1), the noise-aware
pseudo-mask losses (Eqs. 2-5) and their warm-up, against hand
computations and naive loops."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

from mmboxseg.models.dense_heads import BoxTeacherMaskHead
from mmboxseg.models.losses import (NoiseReducedAffinityLoss,
                                    pairwise_neg_log_same_prob,
                                    pseudo_mask_affinity)
from mmboxseg.models.utils import assign_pseudo_masks, mask_aware_score
from mmboxseg.utils import register_all_modules
from .test_box_sup_mask_head import make_head

register_all_modules()


def box(x1, y1, x2, y2):
    return [float(x1), float(y1), float(x2), float(y2)]


def public_code_assignment(ious, scores, iou_thr):
    """The public code's loop (boxteacher.py pseudo_labeling), including its
    `gtm[j] > 0` test and its tie rule (only `iou < max_iou` is skipped)."""
    gtm = [-1] * ious.shape[1]
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        max_iou, m = -1.0, -1
        for j in range(ious.shape[1]):
            iou = float(ious[i, j])
            if gtm[j] > 0 or iou < iou_thr or iou < max_iou:
                continue
            max_iou, m = iou, j
        if m >= 0:
            gtm[m] = i
    return gtm


def test_alg1_ground_truth_taken_by_prediction_0_stays_taken():
    gts = torch.tensor([box(0, 0, 10, 10), box(20, 20, 30, 30)])
    preds = torch.tensor([box(0, 0, 10, 9), box(0, 0, 10, 10)])
    scores = torch.tensor([0.9, 0.8])
    got = assign_pseudo_masks(preds, scores, gts)
    assert got.tolist() == [0, -1]
    # the public code lets prediction 1 take ground truth 0 again
    from mmdet.structures.bbox import bbox_overlaps
    buggy = public_code_assignment(bbox_overlaps(preds, gts), scores, 0.5)
    assert buggy == [1, -1]


def test_alg1_more_predictions_than_gts_and_order_by_score():
    gts = torch.tensor([box(0, 0, 10, 10), box(20, 0, 30, 10)])
    preds = torch.tensor([
        box(0, 0, 10, 10),  # IoU 1 with gt 0, low score
        box(0, 0, 9, 10),  # IoU 0.9 with gt 0, highest score
        box(20, 0, 30, 9),  # IoU 0.9 with gt 1
        box(21, 0, 30, 10),  # IoU 0.9 with gt 1, lower score
    ])
    scores = torch.tensor([0.3, 0.9, 0.6, 0.5])
    assert assign_pseudo_masks(preds, scores, gts).tolist() == [1, 2]


def test_alg1_unmatched_threshold_and_empty_inputs():
    gts = torch.tensor([box(0, 0, 10, 10), box(50, 50, 60, 60)])
    preds = torch.tensor([box(0, 0, 10, 4), box(50, 50, 60, 60)])
    scores = torch.tensor([0.9, 0.04])
    # IoU 0.4 < 0.5 leaves gt 0 alone; score 0.04 < 0.05 drops prediction 1
    assert assign_pseudo_masks(preds, scores, gts, 0.5, 0.05).tolist() == \
        [-1, -1]
    assert assign_pseudo_masks(preds, scores, gts, 0.5, 0.0).tolist() == \
        [-1, 1]
    assert assign_pseudo_masks(preds, scores, gts, 0.4, 0.0).tolist() == \
        [0, 1]
    assert assign_pseudo_masks(preds[:0], scores[:0], gts).tolist() == \
        [-1, -1]
    assert assign_pseudo_masks(preds, scores, gts[:0]).numel() == 0


def test_alg1_ties():
    # equal IoU with two gts: the higher gt index wins, as the public code
    gts = torch.tensor([box(0, 0, 10, 10), box(0, 0, 10, 10)])
    preds = torch.tensor([box(0, 0, 10, 10), box(0, 0, 10, 10)])
    # equal scores: the lower prediction index goes first (and takes gt 1)
    assert assign_pseudo_masks(preds, torch.tensor([0.5, 0.5]),
                               gts).tolist() == [1, 0]
    assert assign_pseudo_masks(preds, torch.tensor([0.4, 0.5]),
                               gts).tolist() == [0, 1]
    # the public code's loop agrees where its `> 0` bug does not bite
    # (prediction 0 takes no gt first here)
    from mmdet.structures.bbox import bbox_overlaps
    ious = bbox_overlaps(preds, gts)
    assert public_code_assignment(ious, torch.tensor([0.4, 0.5]),
                                  0.5) == [0, 1]


def test_mask_aware_score_paper_and_code():
    probs = torch.tensor([[[0.9, 0.6], [0.4, 0.2]]])
    boxes = torch.tensor([[[True, False], [True, False]]])
    c = torch.tensor([0.64])
    # paper: positives inside the box: {0.9} -> sqrt(0.64 * 0.9)
    paper = mask_aware_score(probs, c, boxes, mode='paper')
    assert paper.item() == pytest.approx(math.sqrt(0.64 * 0.9))
    # code: all positives {0.9, 0.6} -> sqrt(sqrt(0.64) * 0.75)
    code = mask_aware_score(probs, c, mode='code')
    assert code.item() == pytest.approx(math.sqrt(0.8 * 0.75))
    # no positive pixel: score 0
    assert mask_aware_score(probs * 0.1, c, boxes).item() == 0.0
    with pytest.raises(ValueError):
        mask_aware_score(probs, c, mode='paper')
    with pytest.raises(ValueError):
        mask_aware_score(probs, c, boxes, mode='other')


def naive_affinity_loss(logits, pseudo, boxes, valid, k=3, d=2, tau=0.5):
    """Eqs. 3-5 pixel by pixel, one instance."""
    h, w = pseudo.shape
    g = pseudo.float()
    smooth = torch.zeros_like(g)
    for y in range(h):
        for x in range(w):
            total = 0.0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        total += float(g[yy, xx])
            smooth[y, x] = (g[y, x] + total / 9) / 2
    p = torch.sigmoid(logits.double())
    num, den = 0.0, 0.0
    r = k // 2
    for y in range(h):
        for x in range(w):
            if not (boxes[y, x] and valid[y, x]):
                continue
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dy == dx == 0:
                        continue
                    yy, xx = y + dy * d, x + dx * d
                    if not (0 <= yy < h and 0 <= xx < w and valid[yy, xx]):
                        continue
                    a = smooth[y, x] * smooth[yy, xx] + \
                        (1 - smooth[y, x]) * (1 - smooth[yy, xx])
                    if a >= tau:
                        same = p[y, x] * p[yy, xx] + \
                            (1 - p[y, x]) * (1 - p[yy, xx])
                        num += float(-torch.log(same))
                        den += 1
    return num / max(den, 1.0)


def test_noise_reduced_affinity_loss_against_a_pixel_loop():
    torch.manual_seed(0)
    logits = torch.randn(3, 9, 11) * 2
    pseudo = torch.rand(3, 9, 11) > 0.5
    boxes = torch.zeros(3, 9, 11, dtype=torch.bool)
    boxes[:, 2:8, 1:9] = True
    valid = torch.ones(3, 9, 11, dtype=torch.bool)
    valid[:, :, 10] = False
    loss = NoiseReducedAffinityLoss(loss_weight=1.0)
    got = loss(logits, pseudo, boxes, valid)
    want = torch.tensor([
        naive_affinity_loss(logits[i], pseudo[i], boxes[i], valid[i])
        for i in range(3)
    ],
                        dtype=torch.float64)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    # without a valid mask, only the tensor border limits the edges
    everywhere = torch.ones_like(valid)
    torch.testing.assert_close(
        loss(logits, pseudo, boxes), loss(logits, pseudo, boxes, everywhere))
    assert NoiseReducedAffinityLoss(loss_weight=0.1)(
        logits, pseudo, boxes, valid).sum().item() == pytest.approx(
            0.1 * got.sum().item(), rel=1e-6)


def test_affinity_by_hand():
    # a 1-pixel object in a 5x5 mask; centre value after Eq. 3:
    # (1 + 1/9) / 2 = 5/9; its right neighbour at distance 2: (0 + 0)/2 = 0
    pseudo = torch.zeros(1, 5, 5)
    pseudo[0, 2, 2] = 1
    aff = pseudo_mask_affinity(pseudo, 3, 2, 3)
    # neighbour order of unfold_wo_center: index 4 is (0, +d)
    assert aff[0, 4, 2, 2].item() == pytest.approx(1 - 5 / 9)
    # two background pixels far from the object: affinity 1
    assert aff[0, 4, 0, 0].item() == pytest.approx(1.0)


def pseudo_head(**kwargs):
    cfg = dict(
        max_masks_to_train=-1, topk_masks_per_img=-1, pseudo_warmup_iters=10)
    cfg.update(kwargs)
    return make_head(BoxTeacherMaskHead, **cfg)


def test_eq2_combination_and_warmup():
    torch.manual_seed(1)
    head = pseudo_head()
    n, h, w = 4, 8, 8
    preds = torch.randn(n, h, w, requires_grad=True)
    gt = InstanceData()
    gt.box_masks = torch.zeros(3, h, w, dtype=torch.bool)
    gt.box_masks[:, 1:7, 1:7] = True
    gt.pseudo_masks = (torch.rand(3, h, w) > 0.5) & gt.box_masks
    gt.pseudo_scores = torch.tensor([0.5, 0.0, 0.8])
    gt_inds = torch.tensor([0, 1, 2, 2])
    valid = torch.ones(h, w, dtype=torch.bool)
    zero = preds.sum() * 0
    head._iter.fill_(5)  # half-way through a 10-iteration warm-up
    got = head.extra_losses(preds, [(gt, gt_inds, valid, None)],
                            torch.zeros(n, dtype=torch.bool), zero, None)
    p = preds.sigmoid()
    t = gt.pseudo_masks[gt_inds].float()
    dice = 1 - 2 * (p * t).flatten(1).sum(1) / (
        (p * p).flatten(1).sum(1) + (t * t).flatten(1).sum(1) + 1e-5)
    aff = NoiseReducedAffinityLoss(loss_weight=1.0)(
        preds, gt.pseudo_masks[gt_inds], gt.box_masks[gt_inds],
        valid[None].expand(n, h, w))
    s = gt.pseudo_scores[gt_inds]  # [0.5, 0, 0.8, 0.8]; N_p = 3
    want_mask = 0.5 * (s * 0.5 * dice).sum() / 3
    want_aff = 0.5 * (s * 0.1 * aff).sum() / 3
    torch.testing.assert_close(got['loss_pseudo_mask'], want_mask)
    torch.testing.assert_close(got['loss_pseudo_affinity'], want_aff)
    # BoxInst's -log P(same) tensor, when handed over, gives the same
    shared = head.extra_losses(preds, [(gt, gt_inds, valid, None)],
                               torch.zeros(n, dtype=torch.bool), zero,
                               pairwise_neg_log_same_prob(preds, 3, 2))
    torch.testing.assert_close(shared['loss_pseudo_affinity'], want_aff)
    got['loss_pseudo_mask'].backward()
    assert preds.grad[1].abs().sum() == 0  # score 0: no gradient
    # warm-up over: factor 1; sum-of-scores normaliser without the fix
    head._iter.fill_(20)
    full = head.extra_losses(preds, [(gt, gt_inds, valid, None)],
                             torch.zeros(n, dtype=torch.bool), zero, None)
    torch.testing.assert_close(full['loss_pseudo_mask'], want_mask * 2)
    head.fix_reduction = False
    nofix = head.extra_losses(preds, [(gt, gt_inds, valid, None)],
                              torch.zeros(n, dtype=torch.bool), zero, None)
    torch.testing.assert_close(nofix['loss_pseudo_mask'],
                               (s * 0.5 * dice).sum() / (s.sum() + 1e-6))
    # instances with a real mask (mixed supervision) take no pseudo loss
    head.fix_reduction = True
    mixed = head.extra_losses(preds, [(gt, gt_inds, valid, None)],
                              torch.tensor([False, False, True, True]), zero,
                              None)
    torch.testing.assert_close(mixed['loss_pseudo_mask'],
                               0.5 * 0.5 * dice[0] / 1)
    # no pseudo mask at all: zero losses, still in the graph
    gt.pseudo_scores = torch.zeros(3)
    none = head.extra_losses(preds, [(gt, gt_inds, valid, None)],
                             torch.zeros(n, dtype=torch.bool), zero, None)
    assert none['loss_pseudo_mask'].item() == 0.0
    assert none['loss_pseudo_affinity'].requires_grad


def test_warmup_factor_and_missing_pseudo_masks():
    head = pseudo_head(pseudo_warmup_iters=4)
    values = []
    for step in (0, 1, 2, 4, 8):
        head._iter.fill_(step)
        values.append(head.pseudo_warmup())
    assert values == [0.0, 0.25, 0.5, 1.0, 1.0]
    gt = InstanceData(box_masks=torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(KeyError, match='pseudo_masks'):
        head.extra_losses(
            torch.zeros(1, 4, 4), [(gt, torch.tensor([0]), None, None)],
            torch.zeros(1, dtype=torch.bool), torch.zeros(()), None)
    with pytest.raises(ValueError):
        pseudo_head(supervision='mask')


def test_smoothing_matches_avg_pool_definition():
    torch.manual_seed(2)
    m = (torch.rand(2, 6, 6) > 0.5).float()
    aff = pseudo_mask_affinity(m, 3, 1, 3)
    smooth = (m[:, None] + F.avg_pool2d(m[:, None], 3, 1, 1)) / 2
    # neighbour (0, +1) of pixel (2, 2) is (2, 3)
    a, b = smooth[:, 0, 2, 2], smooth[:, 0, 2, 3]
    torch.testing.assert_close(aff[:, 4, 2, 2], a * b + (1 - a) * (1 - b))
