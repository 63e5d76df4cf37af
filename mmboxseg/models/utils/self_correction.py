# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM's self-correction (Li et al., CVPR 2023, Sec. 3.2.2): instance maps
from the momentum encoder's positive masks, modulation of the semantic map
and the two-threshold pseudo labels."""
from typing import Tuple, Union

import torch
from torch import Tensor


def positive_mask_weights(ious: Tensor,
                          gt_inds: Tensor,
                          num_gts: int,
                          mu: float = 5.0) -> Tensor:
    """Eq. 6, ``w = exp(mu * IoU)`` normalised over the positives of each
    ground truth.

    ``mu = 0`` gives equal weights, the public code's plain mean
    (``scatter_mean`` of the momentum encoder's mask probabilities over the
    proposals of one ground truth; :class:`SIMMaskHead`'s default). The
    paper uses ``mu = 5`` (Sec. 4.1, Table 6).

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


def adaptive_high_threshold(prob: Tensor,
                            inside: Tensor,
                            num_pos: Tensor,
                            low: float = 0.7,
                            high: float = 0.8) -> Tensor:
    """The public code's per-ground-truth ``tau_high``
    (``dynamic_mask_head.py``, ``thr = clamp(gather(sort(PS * box),
    n_pos), 0.7, 0.8)``): the ``(n_pos + 1)``-th largest ``M_prob`` inside
    the box, where ``n_pos`` counts the box pixels with ``M_I > 0.7``,
    clamped to ``[low, high]``. So about ``n_pos`` pixels pass the
    threshold unless the clamp bites. (The code then averages the value over
    the proposals of a ground truth, which all hold the same value.)

    Args:
        prob (Tensor): ``[G, H, W]`` ``M_prob`` of Eq. 7.
        inside (Tensor): ``[G, H, W]`` bool, the box (pixels outside count
            as 0, as the code's ``PS * box``).
        num_pos (Tensor): ``[G]`` long, ``n_pos``.
        low (float): Lower clamp.
        high (float): Upper clamp.

    Returns:
        Tensor: ``[G]`` thresholds.
    """
    scores = (prob * inside).flatten(1)
    ranked = scores.sort(dim=1, descending=True)[0]
    index = num_pos.long().clamp(0, ranked.size(1) - 1)
    thr = ranked.gather(1, index[:, None])[:, 0]
    return thr.clamp(low, high)


def sim_pseudo_labels(semantic: Tensor, instance: Tensor, box_masks: Tensor,
                      valid: Tensor, alpha: float, tau_high: Union[float,
                                                                   Tensor],
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
        tau_high (float | Tensor): Foreground threshold, one value or
            ``[G]`` per ground truth (:func:`adaptive_high_threshold`).
        tau_low (float): Background threshold.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``[G, H, W]`` ``M_prob`` (float),
        pseudo masks (bool) and weight maps (bool).
    """
    prob = (1.0 - alpha) * semantic + alpha * instance
    inside = box_masks & valid[None]
    if isinstance(tau_high, Tensor):
        tau_high = tau_high.to(prob)[:, None, None]
    pseudo = (prob > tau_high) & inside
    weight = (pseudo | (prob < tau_low)) & inside
    return prob, pseudo, weight


def mask_scores(prob: Tensor, pseudo: Tensor, smooth: float = 0.0) -> Tensor:
    """Eq. 11 (supplement): ``S_k = sum(prob * mask) / (|mask| + smooth)``,
    0 for an empty mask.

    ``smooth = 0`` is the paper's mean of ``M_prob`` over the pseudo mask.
    The public code scores the paste mask ``m = (up4(P_bar) > 0.7) * box``
    at full resolution with ``sum(up4(P_bar) * m) / (|m| + 1)``
    (``smooth = 1``).

    Args:
        prob (Tensor): ``[G, H, W]``.
        pseudo (Tensor): ``[G, H, W]`` bool.
        smooth (float): Added to the denominator.

    Returns:
        Tensor: ``[G]``.
    """
    area = pseudo.flatten(1).sum(dim=1)
    total = (prob * pseudo).flatten(1).sum(dim=1)
    return torch.where(area > 0,
                       total / (area.to(total) + smooth).clamp(min=1e-12),
                       torch.zeros_like(total))
