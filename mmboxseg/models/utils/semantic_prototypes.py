# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM's multi-prototype class centroids (Li et al., CVPR 2023, Sec. 3.2.1).

Pure tensor functions; :class:`mmboxseg.models.dense_heads.SIMMaskHead` keeps
the prototypes as a buffer and calls them.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def sinkhorn_knopp(scores: Tensor,
                   epsilon: float = 0.05,
                   iterations: int = 3) -> Tensor:
    """Entropic optimal transport of ``N`` pixels onto ``L`` prototypes,
    Eqs. 2-3: ``Q* = diag(u) exp(P^T Z / eps) diag(v)`` with the marginals
    ``r = 1/L`` (prototypes share the pixels equally) and ``h = 1/N``.

    Each iteration normalises the prototype marginal then the pixel
    marginal (SwAV's order, as the SIM code), so after any number of
    iterations every pixel's row sums to exactly ``1/N``; the prototype
    marginal converges to ``1/L``. The public code uses ``eps = 0.05`` and 3
    iterations. The exponent is shifted by its maximum first: the shift
    cancels in the normalisations and keeps ``exp`` finite for any ``eps``.

    Args:
        scores (Tensor): ``[N, L]`` cosine similarities ``<z_i, p_l>``.
        epsilon (float): Entropy weight ``eps``.
        iterations (int): Sinkhorn iterations (>= 1).

    Returns:
        Tensor: ``[N, L]`` transport plan ``Q`` (sums to 1 overall).
    """
    if iterations < 1:
        raise ValueError(f'iterations must be >= 1, got {iterations}')
    num_pixels, num_protos = scores.shape
    logits = scores.double() / epsilon
    q = torch.exp(logits - logits.max())
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(dim=0, keepdim=True) / num_protos
        q = q / q.sum(dim=1, keepdim=True) / num_pixels
    return q.to(scores.dtype)


def assign_to_prototypes(
        plan: Tensor,
        gumbel_tau: Optional[float] = None,
        generator: Optional[torch.Generator] = None) -> Tensor:
    """Hard assignment ``1(Q_il = 1)`` of Eq. 5 from a transport plan.

    ``gumbel_tau`` (the default of :class:`SIMMaskHead`, 0.5) reproduces
    the public code (``adet/utils/sinkhorn.py``): after the Sinkhorn
    iterations the plan is scaled so that each pixel's row sums to 1,
    ``Q * N``, and ``F.gumbel_softmax(Q * N, tau=0.5, hard=True)`` draws a
    one-hot row. The Gumbel noise is added to these *probabilities* taken
    as logits, and a hard draw is ``argmax(N Q_i + g)`` whatever ``tau``
    (``tau`` only scales the straight-through soft gradient, unused here),
    so pixel ``i`` goes to prototype ``l`` with probability
    ``softmax(N Q_i)_l``: nearly uniform, as ``N Q_i`` lies in ``[0, 1]``
    (a confident row ``[1, 0, ..., 0]`` over 10 prototypes keeps only
    23 %).
    ``gumbel_tau=None`` is the deterministic arg-max, ``1(Q_il = 1)`` as
    the paper's Eq. 5 writes it.

    Args:
        plan (Tensor): ``[N, L]`` from :func:`sinkhorn_knopp`.
        gumbel_tau (float, optional): Gumbel temperature; None for argmax.
        generator (torch.Generator, optional): RNG of the Gumbel noise.

    Returns:
        Tensor: ``[N]`` long prototype index of every pixel.
    """
    if gumbel_tau is None:
        return plan.argmax(dim=1)
    logits = plan * plan.size(0)
    uniform = torch.rand(
        logits.shape, generator=generator,
        device='cpu').to(logits).clamp(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(uniform))
    return ((logits + gumbel) / gumbel_tau).argmax(dim=1)


CENTROIDS = ('l2', 'mean')


def prototype_centroids(features: Tensor,
                        assignment: Tensor,
                        num_protos: int,
                        mode: str = 'l2') -> Tuple[Tensor, Tensor]:
    """Per-prototype centroid ``p_{n,l}`` of the assigned features.

    ``mode='l2'`` (default, the public code's ``prototype_learning``):
    ``F = l2n(Q^T c)``, the L2-normalised *sum* of the assigned features
    ``c``, a unit vector whatever the pixel count. ``mode='mean'``: the
    paper's Eq. 5, the mean ``sum_i z_i 1(Q_il = 1) / sum_i 1(Q_il = 1)``
    (its norm is below 1 unless all assigned features agree), so Eq. 4
    moves the prototype less towards spread-out clusters.

    Args:
        features (Tensor): ``[N, D]`` L2-normalised pixel features.
        assignment (Tensor): ``[N]`` prototype index of every pixel.
        num_protos (int): ``L``.
        mode (str): ``'l2'`` or ``'mean'``.

    Returns:
        tuple[Tensor, Tensor]: ``[L, D]`` centroids (zero where no pixel)
        and ``[L]`` pixel counts.
    """
    if mode not in CENTROIDS:
        raise ValueError(f'prototype_centroids: mode must be one of '
                         f'{CENTROIDS}, got {mode!r}')
    sums = features.new_zeros((num_protos, features.size(1)))
    sums.index_add_(0, assignment, features)
    counts = torch.bincount(assignment, minlength=num_protos)
    if mode == 'l2':
        return F.normalize(sums, dim=1), counts
    centroids = sums / counts.clamp(min=1)[:, None].to(sums)
    return centroids, counts


def momentum_update_prototypes(prototypes: Tensor, centroids: Tensor,
                               counts: Tensor, momentum: float) -> Tensor:
    """Eq. 4, ``p_l <- gamma p_l + (1 - gamma) p_{n,l}`` for the prototypes
    that received pixels; the others keep their value. The result is
    L2-normalised (the code re-normalises after every update; Eq. 1 is a
    cosine similarity).

    Args:
        prototypes (Tensor): ``[L, D]`` of one class.
        centroids (Tensor): ``[L, D]`` from :func:`prototype_centroids`.
        counts (Tensor): ``[L]`` pixel counts.
        momentum (float): ``gamma`` (0.999).

    Returns:
        Tensor: ``[L, D]`` updated prototypes (a new tensor).
    """
    used = (counts > 0)[:, None]
    moved = momentum * prototypes + (1.0 - momentum) * centroids
    return F.normalize(torch.where(used, moved, prototypes), dim=1)


def semantic_probability(features: Tensor,
                         prototypes: Tensor,
                         tau: float = 1.0) -> Tensor:
    """Semantic probability map, Eq. 1:
    ``M_S,i = sigmoid(max_l <z_i, p_l> / tau)``.

    ``tau = 1`` (default) is the public code
    (``dynamic_mask_head.py``: ``amax(proto_masks).sigmoid()``, no
    temperature) and the default row of the paper's Table 8 (32.2 AP);
    the paper's Sec. 4.1 text says 0.1 (Table 8: 30.9 AP, its worst row),
    kept as ``SIMMaskHead(semantic_tau=0.1)``.

    Args:
        features (Tensor): ``[D, H, W]`` L2-normalised (over ``D``) features.
        prototypes (Tensor): ``[G, L, D]`` L2-normalised prototypes of each
            instance's class.
        tau (float): Temperature.

    Returns:
        Tensor: ``[G, H, W]`` probabilities.
    """
    cosine = torch.einsum('dhw,gld->glhw', features, prototypes)
    return (cosine.max(dim=1)[0] / tau).sigmoid()
