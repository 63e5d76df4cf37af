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
    # every pair with zero offset gets 9 divided by its number of valid
    # joint shifts (release: count): 9 at the centre, 6 on edges, 4 at
    # corners
    valid = torch.tensor([4, 6, 4, 6, 9, 6, 4, 6, 4.])
    torch.testing.assert_close(v[0], torch.diag(9.0 / valid))
    plan = torch.zeros(1, 9, 9)
    plan[0, 0, 1] = 9.0  # (0,0) -> (0,1): offset (0, +1)
    v = pass_message(plan, (h, w), 3)
    # (1,0) -> (1,1): same offset, shift (1, 0); the shifts d that keep
    # both (1,0) - d and (1,1) - d inside: dy in {-1, 0, 1}, dx in {-1, 0}
    assert v[0, 3, 4] == 9.0 / 6
    # (0,0) -> (0,1) itself: dy in {-1, 0}, dx in {-1, 0}
    assert v[0, 0, 1] == 9.0 / 4
    assert v[0, 3, 3] == 0.0  # other offset
    assert v[0, 8, 8] == 0.0  # too far


def _release_pass_message(T, shape):
    """``SemanticCorrSolver.pass_message`` of the release, re-derived with
    its slicing and its count."""
    T = T.view(T.shape[0], shape[0], shape[1], shape[0], shape[1])
    pairwise = torch.zeros_like(T)
    count = torch.zeros_like(T)
    h, w = shape
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            dst = (slice(max(0, dy),
                         min(h + dy, h)), slice(max(0, dx), min(w + dx, w)))
            src = (slice(max(0, -dy),
                         min(h - dy, h)), slice(max(0, -dx), min(w - dx, w)))
            count[:, dst[0], dst[1], dst[0], dst[1]] += 1
            pairwise[:, dst[0], dst[1], dst[0], dst[1]] += \
                T[:, src[0], src[1], src[0], src[1]]
    return (pairwise / count).view(T.shape[0], h * w, h * w)


def _release_solve(cu, shape, num_iter, dist_kernel):
    """``SemanticCorrSolver.solve`` (one smoothing step per iteration)."""
    p = shape[0] * shape[1]
    eye = torch.eye(p).reshape(1, -1, *shape)
    dist_mask = torch.nn.functional.max_pool2d(eye, dist_kernel, 1,
                                               dist_kernel // 2).reshape(
                                                   1, p, p).transpose(2, 1)
    c = cu.clone() * dist_mask
    for _ in range(num_iter):
        votes = _release_pass_message(c.clone(), shape)
        votes = votes / (votes.sum(2, keepdim=True) + 1e-4)
        c = cu + votes
        c = c / (c.sum(2, keepdim=True) + 1e-4)
    return c


def test_message_passing_is_the_release_solver():
    """Against a re-derivation of the release: ``pass_message`` divides by
    the valid shifts, and the window masks the initial cost only (later
    iterations add the whole ``C_u``)."""
    torch.manual_seed(0)
    h, w = 4, 5
    feats = relu_l2_normalise(torch.randn(3, 8, h, w))
    cost = cost_volume(feats[0], feats[1:])
    plan = torch.rand(2, h * w, h * w)
    torch.testing.assert_close(
        pass_message(plan, (h, w)), _release_pass_message(plan, (h, w)))
    for window, iters in ((3, 10), (1, 2)):
        got = solve_correspondence(
            cost, (h, w), num_iters=iters, window=window)
        torch.testing.assert_close(got,
                                   _release_solve(cost, (h, w), iters, window))
    # window 1: pairs outside it still score after the first iteration
    got = solve_correspondence(cost, (h, w), num_iters=2, window=1)
    assert (got[:, 0, 1:] > 0).all()


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
    assert u.shape == (2, 4, 4)  # on the mask grid, as the release
    # an identity plan upsampled: each mask pixel reads the clamped masks
    # around its own position (rows keep sum 1, so fg + bg = 1 ungated)
    torch.testing.assert_close(
        u[0] + u[1], torch.ones(4, 4), atol=1e-3, rtol=0)
    # foreground above, fading downwards and, for object 1, to the right
    assert (u[1, 0] > u[1, 3]).all() and u[1, 0, 0] > u[1, 0, 3]
    assert u[1, 0, 0] > 0.5 > u[1, 3, 3]


def _release_superres(t, feat, size):
    """``DiscoBoxSOLOv2Head.superres_T`` of the release (bilinear, then
    trilinear with the object axis kept)."""
    t = t.reshape(-1, feat * feat, feat, feat)
    t = torch.nn.functional.interpolate(
        t, (size, size), mode='bilinear', align_corners=False)
    t = t.reshape(-1, 1, feat, feat, size * size)
    t = torch.nn.functional.interpolate(
        t, (size, size, size * size), mode='trilinear', align_corners=False)
    return t.reshape(-1, size * size, size * size) * (feat * feat / size**2)


def test_transfer_masks_is_the_release_gated_transfer():
    """``T <- normalise(T softmax(C_u))``, upsampled to the mask grid, gated
    by ``[m_q m_k > 0.5]`` / ``[(1 - m_q)(1 - m_k) > 0.5]`` (the release's
    fg_mask / bg_mask outer products) against clamped object masks."""
    torch.manual_seed(0)
    feat, size, k = 3, 6, 2
    scores = torch.rand(k, feat * feat, feat * feat)
    cost = torch.rand(k, feat * feat, feat * feat)
    q = torch.rand(size, size)
    m = torch.rand(k, size, size)
    got = transfer_masks(scores, m, (feat, feat), cost, q)
    t = scores * cost.softmax(2)
    t = t / (t.sum(2, keepdim=True) + 1e-5)
    t = _release_superres(t, feat, size)
    fg_mask = q.reshape(1, -1, 1) * m.reshape(k, 1, -1)
    bg_mask = (1 - q).reshape(1, -1, 1) * (1 - m).reshape(k, 1, -1)
    fg = torch.matmul(t * (fg_mask > 0.5).float(),
                      m.clamp(0.1, 0.9).reshape(k, -1, 1)).mean(0)
    bg = torch.matmul(t * (bg_mask > 0.5).float(),
                      (1 - m).clamp(0.1, 0.9).reshape(k, -1, 1)).mean(0)
    torch.testing.assert_close(got[1], fg.reshape(size, size))
    torch.testing.assert_close(got[0], bg.reshape(size, size))
    # the gate matters: without the query mask the evidence differs
    assert not torch.allclose(
        transfer_masks(scores, m, (feat, feat), cost), got)


def test_dense_contrastive_loss_by_hand():
    cost = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.3]]],
                        requires_grad=True)
    plan = torch.tensor([[[0.1, 0.7, 0.2], [0.0, 0.1, 0.9]]])
    loss = DenseContrastiveLoss(
        temperature=0.5, release_double_softmax=False, loss_weight=2.0)(cost,
                                                                        plan)
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
    with pytest.raises(ValueError, match='temperature'):
        DenseContrastiveLoss(temperature=0)


def test_dense_contrastive_loss_default_is_the_release_double_softmax():
    """The release: ``CrossEntropyLoss()(softmax(C_u, 2), argmax_2 T)``,
    weight 1. On 7 x 7 RoIs (49 candidates) its gradient is ~1/49 of the
    paper's single-softmax InfoNCE's."""
    cost = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.3]]])
    plan = torch.tensor([[[0.1, 0.7, 0.2], [0.0, 0.1, 0.9]]])
    loss = DenseContrastiveLoss()
    assert loss.release_double_softmax and loss.loss_weight == 1.0
    # by hand: row 0, target 1, logits softmax([0.9, 0.1, 0.0])
    p0 = [math.exp(v) for v in (0.9, 0.1, 0.0)]
    p0 = [v / sum(p0) for v in p0]
    p1 = [math.exp(v) for v in (0.2, 0.8, 0.3)]
    p1 = [v / sum(p1) for v in p1]
    row0 = -p0[1] + math.log(sum(math.exp(v) for v in p0))
    row1 = -p1[2] + math.log(sum(math.exp(v) for v in p1))
    assert math.isclose(
        loss(cost, plan).item(), (row0 + row1) / 2, rel_tol=1e-6)
    # gradient ratio on a 49-pixel RoI pair
    torch.manual_seed(0)
    feats = relu_l2_normalise(torch.randn(2, 16, 7, 7))
    c = cost_volume(feats[0], feats[1:]).requires_grad_()
    target = solve_correspondence(c.detach(), (7, 7))
    grads = []
    for double in (True, False):
        c.grad = None
        DenseContrastiveLoss(release_double_softmax=double)(c,
                                                            target).backward()
        grads.append(c.grad.norm().item())
    assert 30 < grads[1] / grads[0] < 70
