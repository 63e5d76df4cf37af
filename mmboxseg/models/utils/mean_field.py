# Copyright (c) mmboxseg contributors. All rights reserved.
"""DiscoBox's structured teacher: mean-field inference of the Gibbs energy
``E = tau_u + tau_p + sum_s tau_c`` (Sec. 3.2, Appendix A, Alg. 1).

Numbers and the update rule follow the public release (NVlabs DiscoBox,
``MeanField``) where it differs from the paper, as listed per function.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def neighbour_views(x: Tensor, kernel_size: int):
    """The ``k*k`` neighbours of every pixel of ``x [..., H, W]``, zero
    outside: yields ``[..., H, W]`` views in the order of ``F.unfold``
    (offset ``(c // k - k // 2, c % k - k // 2)`` for view ``c``). Shifted
    slices of one padded copy: on the CPU ``F.unfold`` (im2col) costs ~20x
    more for the same numbers."""
    pad = kernel_size // 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            yield padded[..., dy:dy + h, dx:dx + w]


def contrast_sensitive_kernel(images: Tensor,
                              kernel_size: int = 3,
                              alpha0: float = 2.0,
                              theta0: float = 0.5,
                              theta1: float = 30.0,
                              valid: Optional[Tensor] = None) -> Tensor:
    """Pairwise weights of the contrast-sensitive potential ``tau_p``.

    ``K_ij = alpha0 exp(-|I_i - I_j|^2 / (2 theta0^2) - d_ij^2 /
    (2 theta1^2))`` over the ``k x k`` window of ``i``, centre included
    (the release's ``MeanField``; the paper's ``w1 exp(-|I_i-I_j|^2 /
    2 zeta^2)`` over the 8 neighbours has no spatial term and no centre).
    Neighbours outside the image or outside ``valid`` get weight 0 (the
    release adds 10 to the colours so that zero padding is dissimilar: the
    same result, stated directly).

    Args:
        images (Tensor): ``[B, 3, H, W]`` normalised colours at the mask
            resolution (the release: the normalised RGB input resized to
            stride 4, bilinear, ``align_corners=True``).
        kernel_size (int): Window side k (odd). Defaults to 3.
        alpha0 (float): Weight ``alpha0``. Defaults to 2.0 (release).
        theta0 (float): Colour bandwidth in normalised units. Defaults to
            0.5 (release).
        theta1 (float): Spatial bandwidth in mask pixels. Defaults to 30.
        valid (Tensor, optional): ``[B, H, W]`` bool, pixels that are not
            padding.

    Returns:
        Tensor: ``[B, k*k, H, W]``; channel ``c`` is the neighbour at offset
        ``(c // k - k // 2, c % k - k // 2)``.
    """
    if kernel_size % 2 != 1:
        raise ValueError(f'kernel_size must be odd, got {kernel_size}')
    b, _, h, w = images.shape
    pad = kernel_size // 2
    if valid is None:
        valid = images.new_ones((b, h, w), dtype=torch.bool)
    color_dist = torch.stack([(n - images).pow(2).sum(dim=1)
                              for n in neighbour_views(images, kernel_size)],
                             dim=1)
    inside = torch.stack(
        list(neighbour_views(valid.float(), kernel_size)), dim=1) > 0
    offsets = torch.arange(kernel_size, device=images.device) - pad
    spatial = (offsets[:, None]**2 + offsets[None, :]**2).flatten().to(
        images.dtype)
    weights = alpha0 * torch.exp(-color_dist /
                                 (2 * theta0**2) - spatial[:, None, None] /
                                 (2 * theta1**2))
    return weights * (inside & valid[:, None])


def quantise(probs: Tensor, base: float = 0.1) -> Tensor:
    """The threshold function ``phi``: ``1 - base`` where ``probs > 0.5``,
    else ``base`` (release: ``base=0.1``; Alg. 1: 0.3 / 0.7)."""
    return torch.where(probs > 0.5, 1.0 - base, base).to(probs.dtype)


@torch.no_grad()
def mean_field(probs: Tensor,
               kernels: Tensor,
               box_masks: Tensor,
               num_iters: int = 10,
               base: float = 0.1,
               cross_unary: Optional[Tensor] = None,
               cross_weight: float = 0.01) -> Tensor:
    """Mean-field inference of one box's labelling (Alg. 1, as released).

    With ``q`` the quantised two-class marginals, every iteration computes
    ``f_c(i) = exp(sum_j K_ij log q_c(j)) [+ cross_weight * u_c(i)]``,
    zeroes ``f_fg`` outside the box, normalises and re-quantises. As
    ``q`` takes two values only, this is an iterated colour-weighted
    majority vote inside the box.

    Paper vs release: Alg. 1 adds the cross-image term ``w2 sum T C x^s``
    to the energy (inside the exponential) with quantisation 0.3 / 0.7;
    the release (``MeanField.simple_forward``) adds ``gamma * iiu`` to the
    exponentiated factor with ``gamma = 0.01`` and quantises to 0.1 / 0.9.
    We follow the release. It normalises ``(f + 1e-6) / sum_c (f_c +
    1e-6)``: the epsilon is added to both classes, so the label (``> 0.5``)
    is ``f_fg > f_bg`` exactly, whatever the factors' scale (with up to
    ``k*k`` weights of 2 they fall to ~1e-9). Here the same decision is
    computed in log space, ``q_fg = sigmoid(log f_fg - log f_bg)``, which
    cannot underflow; a tie is background in both. The release runs on
    the padded batch image (padding is a colour like any other);
    ``contrast_sensitive_kernel`` gives padding weight 0 when ``valid`` is
    passed.

    Args:
        probs (Tensor): ``[N, H, W]`` initial foreground probabilities
            (the unary: ``(teacher + student) / 2`` inside the box).
        kernels (Tensor): ``[N, k*k, H, W]`` weights from
            :func:`contrast_sensitive_kernel`, one per instance.
        box_masks (Tensor): ``[N, H, W]`` bool boxes.
        num_iters (int): Iterations. Defaults to 10.
        base (float): Quantisation level. Defaults to 0.1.
        cross_unary (Tensor, optional): ``[N, 2, H, W]`` (background,
            foreground) evidence transferred from retrieved objects
            (:func:`mmboxseg.models.utils.transfer_masks`), the cross-image
            potential ``tau_c``.
        cross_weight (float): Its weight ``gamma``. Defaults to 0.01.

    Returns:
        Tensor: ``[N, H, W]`` final foreground marginals, in
        ``{base, 1 - base}``; ``> 0.5`` is the teacher's label.
    """
    n, kk, h, w = kernels.shape
    k = int(round(kk**0.5))
    if probs.shape != (n, h, w) or box_masks.shape != (n, h, w):
        raise ValueError(
            f'mean_field: probs {tuple(probs.shape)}, box_masks '
            f'{tuple(box_masks.shape)} and kernels {tuple(kernels.shape)} '
            'disagree')
    box = box_masks.to(probs.dtype)
    fg = quantise(probs * box, base)
    for _ in range(num_iters):
        log_q = torch.stack([(1 - fg).log(), fg.log()], dim=1)
        log_f = torch.zeros_like(log_q)
        for c, view in enumerate(neighbour_views(log_q, k)):
            log_f += view * kernels[:, c:c + 1]
        if cross_unary is not None:
            log_f = torch.logaddexp(
                log_f, (cross_weight * cross_unary).clamp_min(1e-30).log())
        logit = log_f[:, 1] - log_f[:, 0]
        fg = torch.where(box_masks, quantise(logit.sigmoid(), base),
                         torch.full_like(fg, base))
    return fg
