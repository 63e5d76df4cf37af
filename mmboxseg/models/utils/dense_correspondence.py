# Copyright (c) mmboxseg contributors. All rights reserved.
"""Dense correspondence between intra-class RoIs (DiscoBox Secs. 3.2-3.3,
Appendix B): cost volume, the paper's iterated optimal transport with the
geometric smoothness term, and the release's message-passing variant.

Shapes: an RoI feature map is ``[C, h, w]`` (7 x 7 in the release), ``P =
h * w`` its pixels in row-major order. A correspondence problem between a
query and ``K`` retrieved objects is batched over ``K``: cost volumes and
transport plans are ``[K, P, P]`` (query pixel ``i`` by object pixel
``k``).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

CORRESPONDENCE_METHODS = ('message_passing', 'sinkhorn')


def relu_l2_normalise(feats: Tensor, dim: int = 1) -> Tensor:
    """ReLU then L2 normalisation along ``dim`` (the release's
    ``relu_and_l2_norm_feat``, without its in-place ReLU)."""
    return F.normalize(F.relu(feats), dim=dim, eps=1e-12)


def cost_volume(feats_a: Tensor, feats_b: Tensor) -> Tensor:
    """Appearance cost volume ``C_u(i, k) = f_i . f_k / (|f_i| |f_k|)``
    (Sec. 3.2).

    Args:
        feats_a (Tensor): ``[K, C, h, w]`` (or ``[C, h, w]``, broadcast).
        feats_b (Tensor): ``[K, C, h', w']``.

    Returns:
        Tensor: ``[K, h*w, h'*w']`` cosine similarities.
        ``cost_volume(a, b) == cost_volume(b, a).transpose(1, 2)``.
    """
    if feats_a.dim() == 3:
        feats_a = feats_a[None].expand(len(feats_b), -1, -1, -1)
    a = F.normalize(feats_a.flatten(2), dim=1, eps=1e-12)
    b = F.normalize(feats_b.flatten(2), dim=1, eps=1e-12)
    return torch.bmm(a.transpose(1, 2), b)


def window_mask(hw: Tuple[int, int], size: int, device=None) -> Tensor:
    """``[P, P]`` bool: pixel pairs whose row and column offsets are both
    at most ``size // 2`` (the release's ``dist_kernel`` window)."""
    h, w = hw
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device),
        torch.arange(w, device=device),
        indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    radius = size // 2
    return ((ys[:, None] - ys[None]).abs() <= radius) & (
        (xs[:, None] - xs[None]).abs() <= radius)


def pass_message(plan: Tensor, hw: Tuple[int, int], size: int = 3) -> Tensor:
    """The release's geometric smoothing (``SemanticCorrSolver.
    pass_message``): ``V(i, k) = sum_d T(i - d, k - d) / n(i, k)`` over
    the ``size x size`` joint shifts ``d`` of both ends for which both
    ``i - d`` and ``k - d`` lie in the RoI, ``n(i, k)`` their number (the
    release's ``count``): a match is supported by its neighbours' matches
    with the same offset, averaged over the neighbours that exist.

    Args:
        plan (Tensor): ``[K, P, P]``.
        hw (tuple): ``(h, w)`` of both RoIs.
        size (int): Shift window side (the release: 3).

    Returns:
        Tensor: ``[K, P, P]``.
    """
    h, w = hw
    k = plan.shape[0]
    r = size // 2
    grid = plan.reshape(k, h, w, h, w)
    pads = (r, r, r, r, r, r, r, r)
    padded = F.pad(grid, pads)
    inside = F.pad(grid.new_ones(1, h, w, h, w), pads)
    out = torch.zeros_like(grid)
    count = torch.zeros_like(grid[:1])
    for dy in range(size):
        for dx in range(size):
            out += padded[:, dy:dy + h, dx:dx + w, dy:dy + h, dx:dx + w]
            count += inside[:, dy:dy + h, dx:dx + w, dy:dy + h, dx:dx + w]
    return (out / count).reshape(k, h * w, h * w)


def mask_marginals(masks: Tensor) -> Tensor:
    """Pixel importance ``mu = phi_o(m) = 0.6 + 0.4 [m > 0.5]``
    (Appendix B), normalised to sum 1.

    Args:
        masks (Tensor): ``[K, h, w]`` probabilities.

    Returns:
        Tensor: ``[K, h*w]``.
    """
    mu = 0.6 + 0.4 * (masks.flatten(1) > 0.5).to(masks.dtype)
    return mu / mu.sum(dim=1, keepdim=True)


def sinkhorn(cost: Tensor,
             mu: Tensor,
             nu: Tensor,
             eps: float = 0.05,
             max_iters: int = 100,
             tol: float = 1e-6) -> Tensor:
    """Entropic optimal transport by Sinkhorn's algorithm (Appendix B,
    Alg. 2), in the log domain so that ``exp(-C / eps)`` with ``eps =
    0.05`` cannot underflow (the release doubles ``eps`` on NaN instead).

    Args:
        cost (Tensor): ``[K, P, Q]`` transport costs.
        mu (Tensor): ``[K, P]`` row marginals (sum 1).
        nu (Tensor): ``[K, Q]`` column marginals (sum 1).
        eps (float): Entropic regularisation. Defaults to 0.05 (release
            ``corr_eps``).
        max_iters (int): Iteration cap (``t_max``). Defaults to 100.
        tol (float): Stop when the row marginals are met to this L1 error.

    Returns:
        Tensor: ``[K, P, Q]`` plan ``T = diag(a) K diag(b)`` with
        ``T 1 = mu`` and ``T^T 1 = nu``.
    """
    log_k = -cost / eps
    log_mu, log_nu = mu.clamp_min(1e-30).log(), nu.clamp_min(1e-30).log()
    log_b = torch.zeros_like(nu)
    for _ in range(max_iters):
        log_a = log_mu - torch.logsumexp(log_k + log_b[:, None], dim=2)
        log_b = log_nu - torch.logsumexp(log_k + log_a[:, :, None], dim=1)
        plan = torch.exp(log_a[:, :, None] + log_k + log_b[:, None])
        if (plan.sum(dim=2) - mu).abs().sum(dim=1).max() < tol:
            break
    return plan


def _offset_bins(hw: Tuple[int, int], device) -> Tuple[Tensor, Tensor]:
    """Bin index ``[P, P]`` of each pair's offset ``pos_k - pos_i`` and the
    ``[B, 2]`` offsets of the bins."""
    h, w = hw
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device),
        torch.arange(w, device=device),
        indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None] - ys[:, None] + (h - 1)
    dx = xs[None] - xs[:, None] + (w - 1)
    bins = dy * (2 * w - 1) + dx
    oy, ox = torch.meshgrid(
        torch.arange(2 * h - 1, device=device) - (h - 1),
        torch.arange(2 * w - 1, device=device) - (w - 1),
        indexing='ij')
    return bins, torch.stack([oy.flatten(), ox.flatten()], dim=1)


def geometric_term(plan: Tensor,
                   hw: Tuple[int, int],
                   gamma: float = 1.0) -> Tensor:
    """The paper's smoothness term ``C_g(i, k) = sum_{j,l} exp(-|off_ik -
    off_jl|^2 / (2 gamma)) T(j, l)`` (Sec. 3.2), exactly.

    The kernel depends on the pairs' offsets only, so the sum is a Hough
    vote: ``H(o) = sum_{off_jl = o} T(j, l)`` over the ``(2h-1)(2w-1)``
    offsets, smoothed by the Gaussian and read back at ``off_ik``.
    ``O(K P^2 + K B^2)`` instead of ``O(K P^4)``. The result is divided by
    its maximum per object, so that it lives on the scale of ``C_u``
    (the paper gives no scale).

    Args:
        plan (Tensor): ``[K, P, P]``.
        hw (tuple): ``(h, w)``.
        gamma (float): Bandwidth in RoI cells squared.

    Returns:
        Tensor: ``[K, P, P]`` in ``[0, 1]``.
    """
    bins, offsets = _offset_bins(hw, plan.device)
    k = plan.shape[0]
    votes = plan.new_zeros(k, len(offsets)).scatter_add_(
        1,
        bins.flatten()[None].expand(k, -1), plan.flatten(1))
    diff = (offsets[:, None] - offsets[None]).pow(2).sum(-1).to(plan.dtype)
    smoothed = votes @ torch.exp(-diff / (2 * gamma))
    term = smoothed[:, bins]
    return term / term.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]


def solve_correspondence(cost: Tensor,
                         hw: Tuple[int, int],
                         method: str = 'message_passing',
                         num_iters: int = 10,
                         window: int = 9,
                         smooth_size: int = 3,
                         query_mask: Tensor = None,
                         key_masks: Tensor = None,
                         eps: float = 0.05,
                         gamma: float = 1.0,
                         sinkhorn_iters: int = 100) -> Tensor:
    """Iterated update of the correspondence (Sec. 3.3).

    - ``'message_passing'`` (the release's ``SemanticCorrSolver.solve``,
      the one it trains with): ``C = C_u * window``; ``num_iters`` times
      ``V = pass_message(C)``, rows of ``V`` normalised (``/ (sum +
      1e-4)``), ``C = C_u + V``, rows of ``C`` normalised. As in the
      release, the window (``dist_kernel``) masks the initial ``C`` only:
      from the second iteration on, ``C = C_u + V`` carries the whole
      ``C_u``. Returns ``C``.
    - ``'sinkhorn'`` (the paper's iterated conditional modes, Sec. 3.3):
      ``C^0 = C_u``; ``num_iters`` times ``T = Sinkhorn(1 - C^t)`` with
      marginals from the masks, ``C^{t+1} = C_u + C_g(T)``, pairs outside
      the window blocked throughout. Returns the last ``T``. (The release
      defines a Sinkhorn but never calls it.)

    Args:
        cost (Tensor): ``[K, P, P]`` appearance cost volume ``C_u``.
        hw (tuple): RoI size ``(h, w)``.
        method (str): ``'message_passing'`` or ``'sinkhorn'``.
        num_iters (int): Outer iterations (release: 10).
        window (int): Window of candidate matches (release: 9).
        smooth_size (int): Message-passing shift window (release: 3).
        query_mask (Tensor): ``[h, w]`` query mask (``'sinkhorn'``).
        key_masks (Tensor): ``[K, h, w]`` object masks (``'sinkhorn'``).
        eps (float): Sinkhorn regularisation (release ``corr_eps``).
        gamma (float): Bandwidth of the geometric term.
        sinkhorn_iters (int): Sinkhorn iteration cap.

    Returns:
        Tensor: ``[K, P, P]`` correspondence scores; the match of query
        pixel ``i`` in object ``k`` is ``argmax`` of row ``i``.
    """
    if method not in CORRESPONDENCE_METHODS:
        raise ValueError(f'correspondence method must be one of '
                         f'{CORRESPONDENCE_METHODS}, got {method!r}')
    inside = window_mask(hw, window, cost.device).to(cost.dtype)
    unary = cost * inside
    if method == 'message_passing':
        scores = unary
        for _ in range(num_iters):
            votes = pass_message(scores, hw, smooth_size)
            votes = votes / (votes.sum(dim=2, keepdim=True) + 1e-4)
            scores = cost + votes
            scores = scores / (scores.sum(dim=2, keepdim=True) + 1e-4)
        return scores
    if query_mask is None or key_masks is None:
        raise ValueError("method='sinkhorn' needs query_mask and key_masks "
                         'for the marginals')
    mu = mask_marginals(query_mask[None]).expand(len(cost), -1)
    nu = mask_marginals(key_masks)
    scores = unary
    # pairs outside the window are not candidates
    blocked = (1 - inside) * 1e3
    for _ in range(num_iters):
        plan = sinkhorn(1 - scores + blocked, mu, nu, eps, sinkhorn_iters)
        scores = unary + geometric_term(plan, hw, gamma)
    return plan


def upsample_plan(plan: Tensor, hw: Tuple[int, int], size: int) -> Tensor:
    """The release's ``superres_T``: a ``[K, h*w, h*w]`` correspondence on
    the RoI feature grid to ``[K, size^2, size^2]`` on the mask grid,
    bilinear (``align_corners=False``) on the object side, then on the
    query side, times ``h * w / size^2`` so that rows keep their sums."""
    h, w = hw
    k = plan.shape[0]
    up = F.interpolate(
        plan.reshape(k, h * w, h, w), (size, size),
        mode='bilinear',
        align_corners=False)
    up = up.reshape(k, h, w, size * size).permute(0, 3, 1, 2)
    up = F.interpolate(up, (size, size), mode='bilinear', align_corners=False)
    up = up.reshape(k, size * size, size * size).transpose(1, 2)
    return up * (h * w / size**2)


def transfer_masks(scores: Tensor,
                   key_masks: Tensor,
                   hw: Tuple[int, int],
                   cost: Optional[Tensor] = None,
                   query_mask: Optional[Tensor] = None) -> Tensor:
    """Cross-image evidence for the query's pixels, the unary that the
    cross-image potential ``tau_c`` adds to mean-field (the release's
    ``corr_loss``; the paper's Alg. 1, line 13, sums ``T C x^s`` instead).

    With ``M`` the mask side and ``m_q [M, M]``, ``m_k [K, M, M]`` the query
    and object masks:

    1. ``T <- T * softmax_l C_u(i, l)`` when ``cost`` is given, rows
       normalised (``/ (sum + 1e-5)``);
    2. ``T`` upsampled to ``[K, M^2, M^2]`` (:func:`upsample_plan`);
    3. ``u_fg(i) = mean_k sum_l T_k(i, l) [m_q(i) m_k(l) > 0.5]
       clamp(m_k(l), 0.1, 0.9)`` and ``u_bg(i)`` the same with ``1 - m``
       on both sides (the release's ``fg_mask`` / ``bg_mask`` outer
       products; without ``query_mask`` the gate is left out). Rows are
       not renormalised after the gate, as in the release.

    Args:
        scores (Tensor): ``[K, P, P]`` solver output, ``P = h * w``.
        key_masks (Tensor): ``[K, M, M]`` object mask probabilities.
        hw (tuple): RoI feature grid ``(h, w)``.
        cost (Tensor, optional): ``[K, P, P]`` cost volume ``C_u``.
        query_mask (Tensor, optional): ``[M, M]`` query mask probabilities
            (the student's, as in the release).

    Returns:
        Tensor: ``[2, M, M]`` (background, foreground) evidence.
    """
    plan = scores
    if cost is not None:
        plan = plan * cost.softmax(dim=2)
    plan = plan / (plan.sum(dim=2, keepdim=True) + 1e-5)
    size = key_masks.shape[-1]
    plan = upsample_plan(plan, hw, size)
    key = key_masks.float().flatten(1)  # [K, M^2]
    fg_plan, bg_plan = plan, plan
    if query_mask is not None:
        q = query_mask.float().flatten()
        fg_plan = plan * ((q[None, :, None] * key[:, None]) > 0.5)
        bg_plan = plan * (((1 - q)[None, :, None] * (1 - key)[:, None]) > 0.5)
    fg = torch.bmm(fg_plan, key.clamp(0.1, 0.9)[:, :, None])[..., 0]
    bg = torch.bmm(bg_plan, (1 - key).clamp(0.1, 0.9)[:, :, None])[..., 0]
    return torch.stack([bg.mean(0), fg.mean(0)]).view(2, size, size)
