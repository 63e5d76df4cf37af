# Copyright (c) mmboxseg contributors. All rights reserved.
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmboxseg.registry import MODELS


@MODELS.register_module()
class SIMMaskFocalLoss(nn.Module):
    """The public SIM code's mask loss (lslrh/SIM,
    ``adet/modeling/condinst/dynamic_mask_head.py``, ``mask_focal_loss``
    and the weighted ``dice_coefficient``), used for ``L_pseudo`` (focal
    only) and ``L_paste`` (focal + dice).

    For logits ``z`` ``[N, H, W]``, targets ``t`` and weights ``W``, with
    ``p = sigmoid(z)``:

    ``x = p`` (``double_sigmoid=True``, the code: ``mask_focal_loss`` is
    given probabilities and calls ``binary_cross_entropy_with_logits`` on
    them, so the cross-entropy sees ``sigmoid(p)``) or ``x = z``;
    ``ce = BCEWithLogits(x, t) * W``; ``p_t = p t + (1 - p)(1 - t)``;
    ``alpha_t = alpha t + (1 - alpha)(1 - t)``;

    ``focal = sum(alpha_t ce (1 - p_t)^gamma) / (sum(W) + 1)``, one number
    for the whole batch (every pixel of every proposal weighs the same);

    ``dice_n = 1 - 2 sum(p W t W) / (sum((p W)^2) + sum((t W)^2) + eps)``
    per proposal, averaged over *all* ``N`` rows given. In the code a row
    whose weights are all zero (a proposal of a ground truth that was not
    pasted) adds a constant 1 to that mean; here it adds 0: the same
    gradient (every pasted row's dice is divided by ``N``, not by the
    number of pasted rows), a logged value lower by ``N_zero / N``.

    ``loss = loss_weight * (focal + dice_weight * mean_n dice_n)``.

    The paper's Eq. 8 names BCE + dice instead
    (:class:`WeightedBCEDiceLoss`, the ``*_paper-text`` configs).

    Args:
        alpha (float): Focal ``alpha`` (0.25; < 0 disables it).
        gamma (float): Focal ``gamma`` (2).
        dice_weight (float): Weight of the dice mean (0 for ``L_pseudo``,
            1 for ``L_paste``).
        double_sigmoid (bool): Reproduce the code's cross-entropy on
            probabilities.
        eps (float): Dice smoothing (the code's 1e-5).
        loss_weight (float): Overall weight.
    """

    def __init__(self,
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 dice_weight: float = 0.0,
                 double_sigmoid: bool = True,
                 eps: float = 1e-5,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.dice_weight = dice_weight
        self.double_sigmoid = double_sigmoid
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
            Tensor: The scalar loss.
        """
        if not logits.shape == targets.shape == weights.shape:
            raise ValueError(
                f'SIMMaskFocalLoss: logits {tuple(logits.shape)}, '
                f'targets {tuple(targets.shape)} and weights '
                f'{tuple(weights.shape)} must have one shape')
        t = targets.to(logits.dtype)
        w = weights.to(logits.dtype)
        p = logits.sigmoid()
        x = p if self.double_sigmoid else logits
        ce = F.binary_cross_entropy_with_logits(x, t, reduction='none') * w
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * (1 - p_t)**self.gamma
        if self.alpha >= 0:
            loss = (self.alpha * t + (1 - self.alpha) * (1 - t)) * loss
        out = loss.sum() / (w.sum() + 1)
        if self.dice_weight and len(logits):
            pw, tw = (p * w).flatten(1), (t * w).flatten(1)
            inter = (pw * tw).sum(dim=1)
            union = pw.square().sum(dim=1) + tw.square().sum(dim=1) + self.eps
            has = w.flatten(1).any(dim=1).to(logits.dtype)
            dice = (1 - 2 * inter / union) * has
            out = out + self.dice_weight * dice.mean()
        return self.loss_weight * out
