# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM maths by hand: Sinkhorn (Eqs. 2-3), prototypes (Eqs. 1, 4, 5),
self-correction (Eqs. 6-7), thresholds and ignore map, Eq. 11 scores and the
weighted BCE + dice of Eqs. 8-9."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmboxseg.models.losses import WeightedBCEDiceLoss
from mmboxseg.models.utils import (assign_to_prototypes, instance_probability,
                                   mask_scores, momentum_update_prototypes,
                                   positive_mask_weights, prototype_centroids,
                                   semantic_probability, sim_pseudo_labels,
                                   sinkhorn_knopp)


def test_sinkhorn_marginals():
    torch.manual_seed(0)
    scores = F.normalize(
        torch.randn(60, 8), dim=1) @ F.normalize(
            torch.randn(5, 8), dim=1).t()
    plan = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    # the pixel marginal h = 1/N holds exactly after every iteration
    torch.testing.assert_close(
        plan.sum(dim=1), torch.full((60, ), 1 / 60), rtol=1e-5, atol=0)
    assert not torch.allclose(plan.sum(dim=0), torch.full((5, ), 1 / 5))
    # ... and the prototype marginal r = 1/L is reached on convergence
    plan = sinkhorn_knopp(scores, epsilon=0.05, iterations=500)
    torch.testing.assert_close(
        plan.sum(dim=0), torch.full((5, ), 1 / 5), rtol=1e-4, atol=0)
    assert (plan >= 0).all()


def test_sinkhorn_uniform_and_equipartition():
    plan = sinkhorn_knopp(torch.zeros(6, 3), iterations=1)
    torch.testing.assert_close(plan, torch.full((6, 3), 1 / 18))
    # every pixel prefers prototype 0, by a margin that grows with i; a
    # plain argmax sends all of them there, the transport shares them out
    scores = torch.stack([
        torch.full((9, ), 0.5),
        torch.linspace(0.0, 0.4, 9),
        torch.linspace(0.4, 0.0, 9)
    ],
                         dim=1)
    assert (scores.argmax(dim=1) == 0).all()
    assign = assign_to_prototypes(sinkhorn_knopp(scores, 0.05, 200))
    assert torch.bincount(assign, minlength=3).tolist() == [3, 3, 3]
    # the pixels most similar to prototype 1 go to prototype 1
    assert assign[-3:].tolist() == [1, 1, 1]
    assert assign[:3].tolist() == [2, 2, 2]


def test_sinkhorn_is_finite_for_small_epsilon():
    plan = sinkhorn_knopp(torch.tensor([[1.0, -1.0], [0.9, 1.0]]), 1e-3)
    assert torch.isfinite(plan).all()


def test_gumbel_assignment_is_seeded_and_samples():
    flat = torch.full((200, 4), 1 / 800)
    gen = torch.Generator().manual_seed(1)
    a = assign_to_prototypes(flat, gumbel_tau=0.5, generator=gen)
    gen = torch.Generator().manual_seed(1)
    b = assign_to_prototypes(flat, gumbel_tau=0.5, generator=gen)
    assert torch.equal(a, b)
    assert torch.bincount(a, minlength=4).min() > 20  # not a fixed argmax
    assert (assign_to_prototypes(flat) == 0).all()


def test_prototype_centroids_and_momentum_update_by_hand():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    centroids, counts = prototype_centroids(feats, torch.tensor([0, 0, 1, 1]),
                                            3, 'mean')
    torch.testing.assert_close(
        centroids, torch.tensor([[0.5, 0.5], [0.7, 0.7], [0.0, 0.0]]))
    assert counts.tolist() == [2, 2, 0]
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = momentum_update_prototypes(protos, centroids, counts, 0.9)
    want0 = torch.tensor([0.95, 0.05]) / math.hypot(0.95, 0.05)
    want1 = torch.tensor([0.07, 0.97]) / math.hypot(0.07, 0.97)
    torch.testing.assert_close(out[0], want0)
    torch.testing.assert_close(out[1], want1)
    torch.testing.assert_close(out[2], protos[2])  # no pixel: unchanged
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_semantic_probability_by_hand():
    feats = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # [D=2, 1, 2]
    protos = torch.tensor([[[1.0, 0.0], [0.6, 0.8]],
                           [[0.0, -1.0], [-1.0, 0.0]]])  # [G=2, L=2, D]
    prob = semantic_probability(feats, protos, tau=0.1)
    want = torch.tensor([[[
        torch.sigmoid(torch.tensor(10.0)),
        torch.sigmoid(torch.tensor(8.0))
    ]], [[0.5, 0.5]]])
    torch.testing.assert_close(prob, want)


def test_positive_mask_weights_eq6():
    ious = torch.tensor([1.0, 0.5, 0.8])
    inds = torch.tensor([0, 0, 1])
    w = positive_mask_weights(ious, inds, 2, mu=5.0)
    e1, e2 = math.exp(5.0), math.exp(2.5)
    torch.testing.assert_close(
        w, torch.tensor([e1 / (e1 + e2), e2 / (e1 + e2), 1.0]))
    # mu = 0 is the public code's plain mean
    torch.testing.assert_close(
        positive_mask_weights(ious, inds, 2, mu=0.0),
        torch.tensor([0.5, 0.5, 1.0]))


def test_instance_probability_weighted_sum():
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]]])
    weights = torch.tensor([0.75, 0.25, 1.0])
    maps, has = instance_probability(probs, weights, torch.tensor([2, 2, 0]),
                                     3)
    torch.testing.assert_close(
        maps, torch.tensor([[[0.5, 0.5]], [[0.0, 0.0]], [[0.75, 0.25]]]))
    assert has.tolist() == [True, False, True]


def test_pseudo_labels_thresholds_and_ignore_map():
    semantic = torch.tensor([[[0.9, 0.5, 0.1, 0.9, 0.9]]])
    instance = torch.tensor([[[0.9, 0.8, 0.1, 0.2, 0.9]]])
    box = torch.tensor([[[True, True, True, True, False]]])
    valid = torch.tensor([[True, True, True, True, True]])
    prob, pseudo, weight = sim_pseudo_labels(
        semantic, instance, box, valid, alpha=0.5, tau_high=0.7, tau_low=0.4)
    torch.testing.assert_close(prob,
                               torch.tensor([[[0.9, 0.65, 0.1, 0.55, 0.9]]]))
    # fg above tau_high; bg below tau_low; the band and outside the box: 0
    assert pseudo.tolist() == [[[True, False, False, False, False]]]
    assert weight.tolist() == [[[True, False, True, False, False]]]
    # alpha = 1 is M_I alone; padding pixels never get a weight
    valid[0, 0] = False
    prob, pseudo, weight = sim_pseudo_labels(semantic, instance, box, valid,
                                             1.0, 0.7, 0.4)
    torch.testing.assert_close(prob, instance)
    assert pseudo.tolist() == [[[False, True, False, False, False]]]
    assert weight.tolist() == [[[False, True, True, True, False]]]


def test_mask_scores_eq11():
    prob = torch.tensor([[[0.9, 0.8, 0.3]], [[0.2, 0.2, 0.2]]])
    pseudo = torch.tensor([[[True, True, False]], [[False, False, False]]])
    torch.testing.assert_close(
        mask_scores(prob, pseudo), torch.tensor([0.85, 0.0]))


def test_weighted_bce_dice_by_hand():
    loss = WeightedBCEDiceLoss(loss_weight=0.5)
    logits = torch.zeros(3, 1, 2, requires_grad=True)  # p = 0.5
    target = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    weight = torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]], [[0.0, 0.0]]])
    out = loss(logits, target, weight)
    eps = 1e-5
    full = math.log(2) + 1 - 2 * 0.5 / (0.25 + 0.25 + 1 + eps)
    half = math.log(2) + 1 - 2 * 0.5 / (0.25 + 1 + eps)
    torch.testing.assert_close(out, torch.tensor([full, half, 0.0]) * 0.5)
    out.sum().backward()
    # a pixel with weight 0 receives no gradient
    assert logits.grad[1, 0, 1] == 0 and (logits.grad[2] == 0).all()
    assert logits.grad[0, 0, 1] > 0 and logits.grad[0, 0, 0] < 0


def test_weighted_bce_dice_rejects_shape_mismatch():
    with pytest.raises(ValueError, match='one shape'):
        WeightedBCEDiceLoss()(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2),
                              torch.zeros(1, 2, 3))
