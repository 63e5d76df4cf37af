# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.utils.misc import unfold_wo_center
from torch import Tensor

from mmboxseg.registry import MODELS
from .pairwise_affinity_loss import pairwise_neg_log_same_prob


def pseudo_mask_affinity(pseudo_masks: Tensor, kernel_size: int, dilation: int,
                         smooth_kernel: int) -> Tensor:
    """Label affinity of smoothed pseudo masks (BoxTeacher Eqs. 3-4).

    ``g~ = (g + avgpool_{s x s}(g)) / 2`` (Eq. 3; zero padding counted in
    the average, as the public code's ``F.avg_pool2d``), then
    ``mu_ij = g~_i g~_j + (1 - g~_i)(1 - g~_j)`` (Eq. 4) for every edge of
    the k x k neighbourhood with the given dilation (the code uses the
    pairwise term's k=3, d=2 neighbours).

    Args:
        pseudo_masks (Tensor): ``[N, H, W]`` pseudo masks in [0, 1].

    Returns:
        Tensor: ``[N, k*k - 1, H, W]`` affinities; neighbours outside the
        tensor count as background.
    """
    masks = pseudo_masks.float()[:, None]
    smooth = (masks + F.avg_pool2d(
        masks, smooth_kernel, stride=1, padding=smooth_kernel // 2)) / 2
    neighbours = unfold_wo_center(
        smooth, kernel_size=kernel_size, dilation=dilation)[:, 0]
    return smooth * neighbours + (1 - smooth) * (1 - neighbours)


@MODELS.register_module()
class NoiseReducedAffinityLoss(nn.Module):
    """Noise-reduced mask affinity loss (BoxTeacher Eq. 5), per instance.

    For instance i, the edges kept are ``w_e = 1[mu_e >= tau_a] * b_centre *
    valid_e`` (affinity of the smoothed pseudo mask, centre pixel inside the
    box, both pixels inside the image), and

    ``l_i = sum_e w_e * (-log P(y_e = 1)) / max(sum_e w_e, 1)``

    with ``P(y_e = 1) = p_i p_j + (1 - p_i)(1 - p_j)`` from the predicted
    mask, the pairwise term of BoxInst Eq. 4. Eq. 5 as printed adds
    ``log(p_i p_j)`` and ``log((1 - p_i)(1 - p_j))``; the public code uses
    ``-log P(y_e = 1)`` and ``>= tau_a``, and so does this loss.

    Args:
        kernel_size (int): Neighbourhood size. Defaults to 3.
        dilation (int): Neighbourhood dilation. Defaults to 2.
        smooth_kernel (int): Smoothing window of Eq. 3. Defaults to 3.
        affinity_thresh (float): tau_a. Defaults to 0.5.
        loss_weight (float): lambda_affinity. Defaults to 0.1.
    """

    def __init__(self,
                 kernel_size: int = 3,
                 dilation: int = 2,
                 smooth_kernel: int = 3,
                 affinity_thresh: float = 0.5,
                 loss_weight: float = 0.1) -> None:
        super().__init__()
        if smooth_kernel % 2 != 1:
            raise ValueError(f'smooth_kernel must be odd, got {smooth_kernel}')
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.smooth_kernel = smooth_kernel
        self.affinity_thresh = affinity_thresh
        self.loss_weight = loss_weight

    def edge_weights(self,
                     pseudo_masks: Tensor,
                     box_masks: Tensor,
                     valid_masks: Optional[Tensor] = None) -> Tensor:
        """``[N, k*k - 1, H, W]`` bool edges that enter the loss."""
        affinity = pseudo_mask_affinity(pseudo_masks, self.kernel_size,
                                        self.dilation, self.smooth_kernel)
        in_box = box_masks.bool().unsqueeze(1)
        weights = (affinity >= self.affinity_thresh) & in_box
        # neighbours beyond the tensor (or in padding) are never edges
        if valid_masks is None:
            valid_masks = torch.ones_like(box_masks, dtype=torch.bool)
        valid = valid_masks.float().unsqueeze(1)
        valid_nb = unfold_wo_center(
            valid, kernel_size=self.kernel_size, dilation=self.dilation)
        return weights & ((valid * valid_nb.squeeze(1)) > 0)

    def forward(self,
                mask_logits: Tensor,
                pseudo_masks: Tensor,
                box_masks: Tensor,
                valid_masks: Optional[Tensor] = None,
                neg_log_same: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            mask_logits (Tensor): ``[N, H, W]`` predicted mask logits.
            pseudo_masks (Tensor): ``[N, H, W]`` pseudo masks (bool or
                probabilities).
            box_masks (Tensor): ``[N, H, W]`` bool box masks.
            valid_masks (Tensor, optional): ``[N, H, W]`` bool, pixels inside
                the image (not padding).
            neg_log_same (Tensor, optional): ``[N, k*k - 1, H, W]``
                :func:`pairwise_neg_log_same_prob` of ``mask_logits`` with
                this loss's kernel and dilation, if the caller has it.

        Returns:
            Tensor: ``[N]`` per-instance losses times ``loss_weight``.
        """
        if not (mask_logits.shape == pseudo_masks.shape == box_masks.shape):
            raise ValueError(
                'NoiseReducedAffinityLoss: logits, pseudo masks and box '
                f'masks differ in shape: {tuple(mask_logits.shape)}, '
                f'{tuple(pseudo_masks.shape)}, {tuple(box_masks.shape)}')
        weights = self.edge_weights(pseudo_masks, box_masks,
                                    valid_masks).to(mask_logits.dtype)
        if neg_log_same is None:
            neg_log_same = pairwise_neg_log_same_prob(mask_logits,
                                                      self.kernel_size,
                                                      self.dilation)
        per_instance = (neg_log_same * weights).flatten(1).sum(1) / \
            weights.flatten(1).sum(1).clamp(min=1.0)
        return self.loss_weight * per_instance
