# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional

import torch.nn as nn
from torch import Tensor

from mmboxseg.registry import MODELS


def projection_dice(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """Dice loss of flattened rows, ``1 - 2 sum(x t) / (sum x^2 + sum t^2 +
    eps)`` (CondInst/AdelaiDet ``dice_coefficient``).

    Args:
        pred (Tensor): ``[N, L]`` probabilities.
        target (Tensor): ``[N, L]`` targets in ``{0, 1}``.
        eps (float): Added once to the denominator.

    Returns:
        Tensor: ``[N]`` per-instance losses.
    """
    inter = (pred * target).sum(dim=1)
    union = (pred * pred).sum(dim=1) + (target * target).sum(dim=1) + eps
    return 1.0 - 2.0 * inter / union


@MODELS.register_module()
class BoxProjectionLoss(nn.Module):
    """Projection term of BoxInst (Eq. 3 of Tian et al., CVPR 2021).

    ``L_proj = Dice(max_y m, max_y b) + Dice(max_x m, max_x b)`` per
    instance, averaged over instances (AdelaiDet ``compute_project_term``;
    the projections of Eq. 2 are max operations).  AdelaiDet's dice adds
    ``eps = 1e-5`` once to the denominator; mmdet's ``DiceLoss(eps=5e-6)``
    adds it to both sums, the same total.

    Args:
        use_sigmoid (bool): Inputs are logits (apply a sigmoid) rather than
            probabilities. Defaults to True.
        eps (float): Dice denominator epsilon. Defaults to 1e-5.
        loss_weight (float): Defaults to 1.0.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 eps: float = 1e-5,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_sigmoid = use_sigmoid
        self.eps = eps
        self.loss_weight = loss_weight

    def forward(self,
                mask_preds: Tensor,
                box_masks: Tensor,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """
        Args:
            mask_preds (Tensor): ``[N, H, W]`` mask logits (or probabilities
                when ``use_sigmoid=False``).
            box_masks (Tensor): ``[N, H, W]`` box masks ``b`` (bool or
                float).
            avg_factor (float, optional): Divisor of the sum instead of N.
            reduction_override (str, optional): ``'none'`` returns the
                ``[N]`` per-instance losses; ``'sum'``; ``'mean'``.

        Returns:
            Tensor: Scalar loss, or ``[N]`` with ``reduction='none'``.
        """
        if mask_preds.shape != box_masks.shape:
            raise ValueError('BoxProjectionLoss: mask_preds '
                             f'{tuple(mask_preds.shape)} and box_masks '
                             f'{tuple(box_masks.shape)} differ in shape')
        probs = mask_preds.sigmoid() if self.use_sigmoid else mask_preds
        target = box_masks.to(probs.dtype)
        loss_x = projection_dice(
            probs.amax(dim=1), target.amax(dim=1), eps=self.eps)
        loss_y = projection_dice(
            probs.amax(dim=2), target.amax(dim=2), eps=self.eps)
        loss = (loss_x + loss_y) * self.loss_weight
        reduction = reduction_override or 'mean'
        if reduction == 'none':
            return loss
        if reduction == 'sum':
            return loss.sum()
        if avg_factor is None:
            avg_factor = max(loss.numel(), 1)
        return loss.sum() / avg_factor
