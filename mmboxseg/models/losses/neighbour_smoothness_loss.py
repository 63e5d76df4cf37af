# Copyright (c) mmboxseg contributors. All rights reserved.
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmboxseg.registry import MODELS

# the eight neighbours of Omega(p) in BoxCaseg Eq. (2), as (dy, dx)
EIGHT_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1),
                    (1, 0), (1, 1))


@MODELS.register_module()
class NeighbourSmoothnessLoss(nn.Module):
    """Smooth term ``phi`` of BoxCaseg Eq. (2), weighted 0.05 in Eq. (1).

    ``phi = sum_p sum_{p' in Omega(p)} (S(p) - S(p'))^2`` over the eight
    neighbours. The release (``pd_loss.PairwiseLoss``) averages instead of
    summing: the mean over pixels of each direction, then the mean over the
    eight directions; its neighbours outside the crop are zero (the
    convolution's zero padding), so border pixels are also pulled towards
    background. Both are reproduced here. There is no colour weighting and
    no restriction to the box.

    Args:
        loss_weight (float): The fixed 0.05 of Eq. (1). Defaults to 0.05.
    """

    def __init__(self, loss_weight: float = 0.05) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor) -> Tensor:
        """
        Args:
            logits (Tensor): ``[N, H, W]`` pixel logits.

        Returns:
            Tensor: scalar loss.
        """
        if logits.numel() == 0:
            return logits.sum() * 0
        probs = logits.sigmoid()
        h, w = probs.shape[-2:]
        padded = F.pad(probs, (1, 1, 1, 1))
        # shifted slices instead of an unfold: no im2col copy on CPU
        diffs = torch.stack([
            probs - padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            for dy, dx in EIGHT_NEIGHBOURS
        ])
        return self.loss_weight * diffs.pow(2).mean()
