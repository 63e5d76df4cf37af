# Copyright (c) mmboxseg contributors. All rights reserved.
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmboxseg.registry import MODELS


@MODELS.register_module()
class WeightedBCEDiceLoss(nn.Module):
    """SIM's per-instance mask loss ``l_mask`` (Eqs. 8-9): binary
    cross-entropy plus dice, both restricted to a binary weight map.

    For logits ``x``, target ``g`` and weights ``W`` of one instance,
    ``p = sigmoid(x)``:

    ``bce  = sum_i W_i BCE(x_i, g_i) / max(sum_i W_i, 1)``
    ``dice = 1 - 2 sum_i W_i p_i g_i / (sum_i W_i p_i^2 + sum_i W_i g_i^2
    + eps)`` (V-Net/CondInst dice)

    ``loss = loss_weight * (bce_weight * bce + dice_weight * dice)``; an
    instance whose weights are all zero gets 0 (the public code's weighted
    dice gives it a constant 1, which only shifts the loss).

    The paper names BCE + dice (its Eqs. 8-9; SIM's ``*_paper-text``
    configs); the public code, SIM's default, uses a focal loss applied to
    probabilities (a double sigmoid) plus the weighted dice
    (:class:`SIMMaskFocalLoss`).

    Args:
        bce_weight (float): Weight of the BCE term.
        dice_weight (float): Weight of the dice term.
        eps (float): Dice smoothing.
        loss_weight (float): ``lambda`` of Eq. 10.
    """

    def __init__(self,
                 bce_weight: float = 1.0,
                 dice_weight: float = 1.0,
                 eps: float = 1e-5,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.eps = eps
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor,
                weights: Tensor) -> Tensor:
        """
        Args:
            logits (Tensor): ``[N, H, W]``.
            targets (Tensor): ``[N, H, W]`` bool or float in ``{0, 1}``.
            weights (Tensor): ``[N, H, W]`` bool or float.

        Returns:
            Tensor: ``[N]`` per-instance losses.
        """
        if not logits.shape == targets.shape == weights.shape:
            raise ValueError(
                f'WeightedBCEDiceLoss: logits {tuple(logits.shape)}, '
                f'targets {tuple(targets.shape)} and weights '
                f'{tuple(weights.shape)} must have one shape')
        t = targets.to(logits.dtype)
        w = weights.to(logits.dtype)
        area = w.flatten(1).sum(dim=1)
        bce = F.binary_cross_entropy_with_logits(logits, t, reduction='none')
        bce = (bce * w).flatten(1).sum(dim=1) / area.clamp(min=1)
        p = logits.sigmoid()
        inter = (w * p * t).flatten(1).sum(dim=1)
        denom = (w * p * p).flatten(1).sum(dim=1) + \
            (w * t * t).flatten(1).sum(dim=1) + self.eps
        dice = (1 - 2 * inter / denom) * (area > 0).to(logits.dtype)
        return self.loss_weight * (
            self.bce_weight * bce + self.dice_weight * dice)
