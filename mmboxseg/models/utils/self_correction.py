# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM's self-correction (Li et al., CVPR 2023, Sec. 3.2.2): instance maps
from the momentum encoder's positive masks, modulation of the semantic map
and the two-threshold pseudo labels."""
from typing import Tuple

import torch
from torch import Tensor


def positive_mask_weights(ious: Tensor,
                          gt_inds: Tensor,
                          num_gts: int,
                          mu: float = 5.0) -> Tensor:
    """Eq. 6, ``w = exp(mu * IoU)`` normalised over the positives of each
    ground truth.

    The public code averages the positives with equal weights (``mu = 0``);
    we follow the paper (``mu = 5``, its Table 6).

    Args:
        ious (Tensor): ``[n]`` IoU of each positive's predicted box with its
            ground-truth box.
        gt_inds (Tensor): ``[n]`` ground truth of each positive.
        num_gts (int): ``G``.
        mu (float): Weight gap.

    Returns:
        Tensor: ``[n]`` weights; they sum to 1 within each ground truth.
    """
    # exp(mu * (iou - 1)) has the same ratios and cannot overflow
    raw = torch.exp(mu * (ious - 1.0))
    totals = raw.new_zeros(num_gts).index_add_(0, gt_inds, raw)
    return raw / totals[gt_inds]


def instance_probability(probs: Tensor, weights: Tensor, gt_inds: Tensor,
                         num_gts: int) -> Tuple[Tensor, Tensor]:
    """Instance probability map ``M_I`` of every ground truth: the
    ``weights``-weighted sum of its positives' mask probabilities.

    Args:
        probs (Tensor): ``[n, H, W]`` momentum-encoder mask probabilities.
        weights (Tensor): ``[n]`` from :func:`positive_mask_weights`.
        gt_inds (Tensor): ``[n]``.
        num_gts (int): ``G``.

    Returns:
        tuple[Tensor, Tensor]: ``[G, H, W]`` maps and ``[G]`` bool, the
        ground truths that have at least one positive (the others' maps are
        zero).
    """
    maps = probs.new_zeros((num_gts, ) + probs.shape[1:])
    maps.index_add_(0, gt_inds, probs * weights[:, None, None])
    has = torch.bincount(gt_inds, minlength=num_gts) > 0
    return maps, has


def sim_pseudo_labels(semantic: Tensor, instance: Tensor, box_masks: Tensor,
                      valid: Tensor, alpha: float, tau_high: float,
                      tau_low: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Eq. 7 and the two thresholds of Eq. 8.

    ``M_prob = (1 - alpha) M_S + alpha M_I``; the pseudo mask is
    ``M_prob > tau_high`` and the weight map ``W`` is 1 where
    ``M_prob > tau_high`` or ``M_prob < tau_low`` (0 in the ambiguous band).
    Both are restricted to the ground-truth box and to real image pixels, as
    the public code (outside the box the projection term supervises).

    Args:
        semantic (Tensor): ``[G, H, W]`` ``M_S``.
        instance (Tensor): ``[G, H, W]`` ``M_I``.
        box_masks (Tensor): ``[G, H, W]`` bool.
        valid (Tensor): ``[H, W]`` bool, non-padding pixels.
        alpha (float): Modulation intensity (0.5).
        tau_high (float): Foreground threshold.
        tau_low (float): Background threshold.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``[G, H, W]`` ``M_prob`` (float),
        pseudo masks (bool) and weight maps (bool).
    """
    prob = (1.0 - alpha) * semantic + alpha * instance
    inside = box_masks & valid[None]
    pseudo = (prob > tau_high) & inside
    weight = (pseudo | (prob < tau_low)) & inside
    return prob, pseudo, weight


def mask_scores(prob: Tensor, pseudo: Tensor) -> Tensor:
    """Eq. 11 (supplement): ``S_k = mean of M_prob over the pseudo mask``,
    0 for an empty mask.

    Args:
        prob (Tensor): ``[G, H, W]``.
        pseudo (Tensor): ``[G, H, W]`` bool.

    Returns:
        Tensor: ``[G]``.
    """
    area = pseudo.flatten(1).sum(dim=1)
    total = (prob * pseudo).flatten(1).sum(dim=1)
    return torch.where(area > 0, total / area.clamp(min=1),
                       torch.zeros_like(total))
