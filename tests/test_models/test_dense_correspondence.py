# Copyright (c) mmboxseg contributors. All rights reserved.
"""Cost volume, Sinkhorn, the geometric term, message passing, the solver
and mask transfer of DiscoBox's dense correspondence; the dense
contrastive loss against a hand computation."""
import math

import pytest
import torch

from mmboxseg.models.losses import DenseContrastiveLoss
from mmboxseg.models.utils import (cost_volume, geometric_term, mask_marginals,
                                   pass_message, relu_l2_normalise, sinkhorn,
                                   solve_correspondence, transfer_masks,
                                   window_mask)


def test_cost_volume_shapes_symmetry_and_values():
    torch.manual_seed(0)
    a = torch.randn(3, 8, 4, 5)
    b = torch.randn(3, 8, 2, 3)
    c = cost_volume(a, b)
    assert c.shape == (3, 20, 6)
    torch.testing.assert_close(c, cost_volume(b, a).transpose(1, 2))
    # entry by hand: cosine of pixel (1, 2) of a[1] and pixel (0, 1) of b[1]
    fa, fb = a[1, :, 1, 2], b[1, :, 0, 1]
    want = (fa @ fb) / (fa.norm() * fb.norm())
    assert math.isclose(
        c[1, 1 * 5 + 2, 0 * 3 + 1].item(), want.item(), rel_tol=1e-5)
    # a 3-D query broadcasts over the K objects
    torch.testing.assert_close(
        cost_volume(a[0], b), cost_volume(a[:1].expand(3, -1, -1, -1), b))
    # self-similarity is 1 on the diagonal
    assert torch.allclose(
        cost_volume(a, a).diagonal(dim1=1, dim2=2), torch.ones(3, 20))


def test_relu_l2_normalise_does_not_touch_its_input():
    x = torch.tensor([[[[-1.0]], [[3.0]], [[4.0]]]])
    y = relu_l2_normalise(x)
    assert torch.equal(x[0, :, 0, 0], torch.tensor([-1.0, 3.0, 4.0]))
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([0.0, 0.6, 0.8]))


def test_sinkhorn_meets_the_marginals():
    torch.manual_seed(0)
    cost = torch.rand(2, 6, 5) * 2
    mu = torch.rand(2, 6) + 0.1
    nu = torch.rand(2, 5) + 0.1
    mu, nu = mu / mu.sum(1, keepdim=True), nu / nu.sum(1, keepdim=True)
    plan = sinkhorn(cost, mu, nu, eps=0.05, max_iters=500, tol=1e-7)
    torch.testing.assert_close(plan.sum(2), mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(1), nu, atol=1e-5, rtol=0)
    assert (plan >= 0).all()
    # small eps on a permutation cost recovers the permutation
    perm = torch.tensor([2, 0, 3, 1])
    cost = torch.ones(1, 4, 4)
    cost[0, torch.arange(4), perm] = 0
    uniform = torch.full((1, 4), 0.25)
    plan = sinkhorn(cost, uniform, uniform, eps=0.01)
    assert torch.equal(plan[0].argmax(1), perm)
    torch.testing.assert_close(
        plan[0].max(1).values, uniform[0], atol=1e-4, rtol=0)


def test_mask_marginals():
    m = torch.tensor([[[0.9, 0.2], [0.6, 0.5]]])
    mu = mask_marginals(m)
    torch.testing.assert_close(mu, torch.tensor([[1.0, 0.6, 1.0, 0.6]]) / 3.2)


def test_window_mask():
    w = window_mask((3, 3), 3)
    assert w.shape == (9, 9)
    assert w[4].all()  # the centre sees everything within +-1
    assert w[0].sum() == 4  # a corner sees its 2x2
    assert not w[0, 8]


def test_pass_message_shifts_both_ends_together():
    h = w = 3
    plan = torch.zeros(1, 9, 9)
    plan[0, 4, 4] = 9.0  # centre -> centre
    v = pass_message(plan, (h, w), 3)
    # every pair with zero offset around the centre gets 1, the rest 0
    want = torch.zeros(9, 9)
    for i in range(9):
        want[i, i] = 1.0
    torch.testing.assert_close(v[0], want)
    plan = torch.zeros(1, 9, 9)
    plan[0, 0, 1] = 9.0  # (0,0) -> (0,1): offset (0, +1)
    v = pass_message(plan, (h, w), 3)
    assert v[0, 3, 4] == 1.0  # (1,0) -> (1,1): same offset, neighbour
    assert v[0, 3, 3] == 0.0  # other offset
    assert v[0, 8, 8] == 0.0  # too far


def test_geometric_term_matches_the_formula():
    torch.manual_seed(0)
    h, w, gamma = 2, 3, 0.7
    plan = torch.rand(2, h * w, h * w)
    got = geometric_term(plan, (h, w), gamma)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], 1).float()
    off = pos[None, :, :] - pos[:, None, :]  # off[i, k] = pos_k - pos_i
    brute = torch.zeros_like(plan)
    for i in range(h * w):
        for k in range(h * w):
            d = (off[i, k][None, None] - off).pow(2).sum(-1)
            brute[:, i, k] = (torch.exp(-d / (2 * gamma)) * plan).sum((1, 2))
    brute = brute / brute.flatten(1).max(1).values[:, None, None]
    torch.testing.assert_close(got, brute)


@pytest.mark.parametrize('method', ['message_passing', 'sinkhorn'])
def test_solver_finds_a_shifted_copy(method):
    """Object features equal to the query's shifted by one column: the
    solver's argmax is that shift on the cells where it exists."""
    torch.manual_seed(0)
    h = w = 5
    query = torch.randn(16, h, w).relu() + 0.01
    key = torch.roll(query, shifts=1, dims=2)[None].repeat(2, 1, 1, 1)
    cost = cost_volume(
        relu_l2_normalise(query[None])[0], relu_l2_normalise(key))
    scores = solve_correspondence(
        cost, (h, w),
        method=method,
        num_iters=3,
        window=9,
        query_mask=torch.ones(h, w),
        key_masks=torch.ones(2, h, w))
    assert scores.shape == (2, 25, 25)
    match = scores[0].argmax(1).view(h, w)
    want = (torch.arange(h)[:, None] * w + torch.arange(w)[None] + 1)
    assert torch.equal(match[:, :-1], want[:, :-1])
    with pytest.raises(ValueError, match='method'):
        solve_correspondence(cost, (h, w), method='hungarian')
    with pytest.raises(ValueError, match='query_mask'):
        solve_correspondence(cost, (h, w), method='sinkhorn')


def test_transfer_masks_with_an_identity_plan():
    plan = torch.eye(4)[None].repeat(2, 1, 1)
    masks = torch.zeros(2, 4, 4)
    masks[0, :2, :] = 1.0  # top half
    masks[1, :2, :2] = 1.0  # top-left quarter
    u = transfer_masks(plan, masks, (2, 2))
    # pooled 2x2 masks, clamped to [0.1, 0.9], averaged over the objects
    fg = torch.tensor([[0.9, (0.9 + 0.1) / 2], [0.1, 0.1]])
    torch.testing.assert_close(u[1], fg)
    torch.testing.assert_close(u[0], 1 - fg)


def test_dense_contrastive_loss_by_hand():
    cost = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.3]]],
                        requires_grad=True)
    plan = torch.tensor([[[0.1, 0.7, 0.2], [0.0, 0.1, 0.9]]])
    loss = DenseContrastiveLoss(temperature=0.5, loss_weight=2.0)(cost, plan)
    # targets 1 and 2
    row0 = -(0.1 / 0.5) + math.log(
        sum(math.exp(v / 0.5) for v in (0.9, 0.1, 0.0)))
    row1 = -(0.3 / 0.5) + math.log(
        sum(math.exp(v / 0.5) for v in (0.2, 0.8, 0.3)))
    assert math.isclose(loss.item(), 2.0 * (row0 + row1) / 2, rel_tol=1e-6)
    loss.backward()
    # d/dC of the target entry: weight/N * (softmax - 1) / tau
    p = torch.softmax(torch.tensor([0.9, 0.1, 0.0]) / 0.5, 0)
    want = 2.0 / 2 * (p[1] - 1) / 0.5
    assert math.isclose(cost.grad[0, 0, 1].item(), want.item(), rel_tol=1e-5)
    # the release's double softmax: softmax probabilities as logits
    release = DenseContrastiveLoss(release_double_softmax=True)(cost.detach(),
                                                                plan)
    probs = torch.softmax(cost.detach()[0], 1)
    want = torch.nn.functional.cross_entropy(probs, torch.tensor([1, 2]))
    assert math.isclose(release.item(), want.item(), rel_tol=1e-6)
    with pytest.raises(ValueError, match='temperature'):
        DenseContrastiveLoss(temperature=0)
