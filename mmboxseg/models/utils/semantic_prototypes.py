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

    Deterministic argmax by default. ``gumbel_tau`` reproduces the public
    code's ``gumbel_softmax(Q * N, tau, hard=True)``, which samples the
    assignment (applied to probabilities, not logits, as there).

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


def prototype_centroids(features: Tensor, assignment: Tensor,
                        num_protos: int) -> Tuple[Tensor, Tensor]:
    """Per-prototype mean of the assigned features, Eq. 5.

    Args:
        features (Tensor): ``[N, D]`` L2-normalised pixel features.
        assignment (Tensor): ``[N]`` prototype index of every pixel.
        num_protos (int): ``L``.

    Returns:
        tuple[Tensor, Tensor]: ``[L, D]`` centroids (zero where no pixel)
        and ``[L]`` pixel counts.
    """
    sums = features.new_zeros((num_protos, features.size(1)))
    sums.index_add_(0, assignment, features)
    counts = torch.bincount(assignment, minlength=num_protos)
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
                         tau: float = 0.1) -> Tensor:
    """Semantic probability map, Eq. 1:
    ``M_S,i = sigmoid(max_l <z_i, p_l> / tau)``.

    ``tau = 0.1`` is the paper's Sec. 4.1 value (our default); the public
    code applies no temperature (``tau = 1``), and the paper's Table 8 has
    1.0 as its default row.

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
