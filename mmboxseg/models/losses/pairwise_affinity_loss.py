# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.utils.misc import unfold_wo_center
from torch import Tensor

from mmboxseg.registry import MODELS


def pairwise_neg_log_same_prob(mask_logits: Tensor, kernel_size: int,
                               dilation: int) -> Tensor:
    """``-log P(y_e = 1)`` for every edge of the k x k dilated
    neighbourhood (BoxInst Eq. 4, in log space).

    ``P(y_e = 1) = m_i m_j + (1 - m_i)(1 - m_j)`` with ``m = sigmoid(z)``;
    ``log P = logaddexp(log m_i + log m_j, log(1-m_i) + log(1-m_j))``.
    The neighbourhood is zero-padded in log space (``log m = 0``), as in
    AdelaiDet; those edges always have zero colour similarity, so they never
    contribute to the loss.

    Args:
        mask_logits (Tensor): ``[N, H, W]`` mask logits ``z``.
        kernel_size (int): Neighbourhood size k.
        dilation (int): Neighbourhood dilation.

    Returns:
        Tensor: ``[N, k*k - 1, H, W]``.
    """
    logits = mask_logits[:, None]
    log_fg = F.logsigmoid(logits)
    log_bg = F.logsigmoid(-logits)
    log_fg_nb = unfold_wo_center(
        log_fg, kernel_size=kernel_size, dilation=dilation)
    log_bg_nb = unfold_wo_center(
        log_bg, kernel_size=kernel_size, dilation=dilation)
    log_same = torch.logaddexp(log_fg[:, :, None] + log_fg_nb,
                               log_bg[:, :, None] + log_bg_nb)
    return -log_same[:, 0]


@MODELS.register_module()
class PairwiseAffinityLoss(nn.Module):
    """Colour-pairwise affinity term of BoxInst (Eq. 8).

    ``L_pair = -(1 / N_e) sum_e 1{S_e >= tau} log P(y_e = 1)`` over the edges
    whose centre pixel lies in the box (AdelaiDet weights each edge by the
    box membership of its centre pixel only; the paper's "edges in the
    box").  The caller passes the edge weights ``w_e = 1{S_e >= tau} *
    b_centre``; the loss is ``sum(L * w) / max(sum(w), 1)`` over the whole
    batch, as AdelaiDet (mmdet 3.3.0 clamps per image instead).

    Args:
        kernel_size (int): Neighbourhood size. Defaults to 3.
        dilation (int): Neighbourhood dilation. Defaults to 2.
        loss_weight (float): Defaults to 1.0.
    """

    def __init__(self,
                 kernel_size: int = 3,
                 dilation: int = 2,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.loss_weight = loss_weight

    @property
    def num_neighbours(self) -> int:
        return self.kernel_size * self.kernel_size - 1

    def forward(self,
                mask_logits: Tensor,
                edge_weights: Tensor,
                avg_factor: Optional[float] = None,
                neg_log_same: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            mask_logits (Tensor): ``[N, H, W]`` mask logits.
            edge_weights (Tensor): ``[N, k*k - 1, H, W]`` edge weights.
            avg_factor (float, optional): Divisor instead of
                ``max(sum(edge_weights), 1)``.
            neg_log_same (Tensor, optional): ``[N, k*k - 1, H, W]``
                :func:`pairwise_neg_log_same_prob` of ``mask_logits``, when
                the caller already has it (it is the largest tensor of the
                mask losses; BoxTeacher's affinity loss shares it).

        Returns:
            Tensor: Scalar loss.
        """
        expected = (mask_logits.size(0), self.num_neighbours,
                    *mask_logits.shape[1:])
        if tuple(edge_weights.shape) != expected:
            raise ValueError(
                'PairwiseAffinityLoss: edge_weights has shape '
                f'{tuple(edge_weights.shape)}, expected {expected} '
                f'(kernel_size={self.kernel_size}); the data preprocessor '
                'and the loss must use the same pairwise_size')
        if neg_log_same is None:
            neg_log_same = pairwise_neg_log_same_prob(mask_logits,
                                                      self.kernel_size,
                                                      self.dilation)
        weights = edge_weights.to(neg_log_same.dtype)
        if avg_factor is None:
            avg_factor = weights.sum().clamp(min=1.0)
        return self.loss_weight * (neg_log_same * weights).sum() / avg_factor
