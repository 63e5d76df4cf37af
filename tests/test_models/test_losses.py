# Copyright (c) mmboxseg contributors. All rights reserved.
import math

import pytest
import torch

from mmboxseg.models.losses import (BoxProjectionLoss, PairwiseAffinityLoss,
                                    pairwise_neg_log_same_prob)


def dice(x, t, eps=1e-5):
    """The notes' formula: 1 - 2 sum(x t) / (sum x^2 + sum t^2 + eps)."""
    return 1 - 2 * (x * t).sum() / ((x * x).sum() + (t * t).sum() + eps)


def test_projection_loss_hand_computed():
    # one instance, probabilities given directly (use_sigmoid=False)
    probs = torch.tensor([[[0.2, 0.9, 0.1], [0.4, 0.3, 0.0]]])
    box = torch.tensor([[[0, 1, 1], [0, 1, 1]]], dtype=torch.bool)
    loss = BoxProjectionLoss(use_sigmoid=False)(probs, box)
    # max over H (x-projection): [0.4, 0.9, 0.1] vs [0, 1, 1]
    lx = 1 - 2 * (0.9 + 0.1) / ((0.16 + 0.81 + 0.01) + 2 + 1e-5)
    # max over W (y-projection): [0.9, 0.4] vs [1, 1]
    ly = 1 - 2 * (0.9 + 0.4) / ((0.81 + 0.16) + 2 + 1e-5)
    assert loss.item() == pytest.approx(lx + ly, rel=1e-6)


def test_projection_loss_mean_weight_and_none():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 6)
    box = torch.zeros(3, 5, 6, dtype=torch.bool)
    box[0, 1:3, 2:5] = True
    box[1, :, :2] = True
    box[2, 4:, 5:] = True
    loss_fn = BoxProjectionLoss(loss_weight=2.0)
    per_inst = loss_fn(logits, box, reduction_override='none')
    probs = logits.sigmoid()
    expected = torch.stack([
        dice(probs[i].amax(0), box[i].float().amax(0)) +
        dice(probs[i].amax(1), box[i].float().amax(1)) for i in range(3)
    ]) * 2.0
    torch.testing.assert_close(per_inst, expected)
    assert loss_fn(logits, box).item() == pytest.approx(
        expected.mean().item(), rel=1e-6)
    assert loss_fn(
        logits, box, avg_factor=6).item() == pytest.approx(
            expected.sum().item() / 6, rel=1e-6)


def test_projection_loss_gradient_matches_formula():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5, dtype=torch.double, requires_grad=True)
    box = torch.zeros(2, 4, 5, dtype=torch.double)
    box[0, 1:3, 1:4] = 1
    box[1, 0:2, 3:5] = 1
    torch.autograd.gradcheck(lambda z: BoxProjectionLoss()(z, box), (logits, ))
    # and the gradient equals the one of the notes' formula
    BoxProjectionLoss()(logits, box).backward()
    grad = logits.grad.clone()
    logits.grad = None
    p = logits.sigmoid()
    ref = sum(
        dice(p[i].amax(0), box[i].amax(0)) + dice(p[i].amax(1), box[i].amax(1))
        for i in range(2)) / 2
    ref.backward()
    torch.testing.assert_close(grad, logits.grad)
    # only pixels that are a row or column maximum receive gradient
    assert (grad != 0).sum() <= 2 * (4 + 5)


def test_projection_loss_is_zero_for_the_box_itself():
    box = torch.zeros(1, 6, 6)
    box[0, 2:5, 1:4] = 1
    loss = BoxProjectionLoss(use_sigmoid=False)(box, box)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_projection_loss_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match='differ in shape'):
        BoxProjectionLoss()(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))


def naive_pairwise(logits, k, d):
    """-log(p_i p_j + (1 - p_i)(1 - p_j)) with explicit neighbour offsets;
    out-of-image neighbours count as p_j = 1 (log-space zero padding)."""
    n, h, w = logits.shape
    p = logits.sigmoid()
    r = k // 2
    offsets = [(dy * d, dx * d) for dy in range(-r, r + 1)
               for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
    out = torch.zeros(n, len(offsets), h, w, dtype=logits.dtype)
    for o, (dy, dx) in enumerate(offsets):
        pj = torch.ones_like(p)
        ys = slice(max(dy, 0), h + min(dy, 0))
        xs = slice(max(dx, 0), w + min(dx, 0))
        yt = slice(max(-dy, 0), h + min(-dy, 0))
        xt = slice(max(-dx, 0), w + min(-dx, 0))
        pj[:, yt, xt] = p[:, ys, xs]
        # a padded neighbour has log p = 0 and log(1 - p) = 0 as well
        same = p * pj + (1 - p) * (1 - pj)
        pad = torch.ones_like(p, dtype=torch.bool)
        pad[:, yt, xt] = False
        same = torch.where(pad, p + (1 - p), same)
        out[:, o] = -torch.log(same)
    return out


@pytest.mark.parametrize('k,d', [(3, 1), (3, 2), (5, 1)])
def test_pairwise_matches_naive_formula(k, d):
    torch.manual_seed(2)
    logits = torch.randn(2, 7, 6, dtype=torch.double) * 2
    got = pairwise_neg_log_same_prob(logits, k, d)
    torch.testing.assert_close(got, naive_pairwise(logits, k, d))


def test_pairwise_hand_computed_two_pixels():
    # pixel (0,0) has logit 0 (p=0.5), its right neighbour at dilation 1
    # has logit log(3) (p=0.75): P(same) = 0.5*0.75 + 0.5*0.25 = 0.5
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    loss_map = pairwise_neg_log_same_prob(logits, 3, 1)
    right = 4  # neighbour order: row-major over the 3x3 window minus centre
    assert loss_map[0, right, 0, 0].item() == pytest.approx(math.log(2.0))
    weights = torch.zeros(1, 8, 1, 2)
    weights[0, right, 0, 0] = 1
    loss = PairwiseAffinityLoss(kernel_size=3, dilation=1)(logits, weights)
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_pairwise_normalisation_over_the_whole_batch():
    torch.manual_seed(3)
    logits = torch.randn(3, 5, 5)
    weights = (torch.rand(3, 8, 5, 5) > 0.5).float()
    weights[2] = 0  # an instance without valid edges
    loss = PairwiseAffinityLoss()(logits, weights)
    ref = (pairwise_neg_log_same_prob(logits, 3, 2) * weights).sum() / \
        weights.sum()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    no_edges = PairwiseAffinityLoss()(logits, torch.zeros_like(weights))
    assert no_edges.item() == 0.0


def test_pairwise_gradient_and_stability():
    logits = torch.tensor([[[60.0, -60.0], [30.0, 0.0]]],
                          dtype=torch.double,
                          requires_grad=True)
    weights = torch.ones(1, 8, 2, 2, dtype=torch.double)
    loss = PairwiseAffinityLoss(dilation=1)(logits, weights)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    small = torch.randn(1, 4, 4, dtype=torch.double, requires_grad=True)
    torch.autograd.gradcheck(
        lambda z: PairwiseAffinityLoss()
        (z, torch.ones(1, 8, 4, 4, dtype=z.dtype)), (small, ))


def test_pairwise_kernel_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match='pairwise_size'):
        PairwiseAffinityLoss(kernel_size=3)(torch.zeros(1, 4, 4),
                                            torch.zeros(1, 24, 4, 4))
