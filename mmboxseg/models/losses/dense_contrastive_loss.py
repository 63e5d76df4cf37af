# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmboxseg.registry import MODELS


@MODELS.register_module()
class DenseContrastiveLoss(nn.Module):
    """Dense contrastive loss ``L_nce`` of DiscoBox (Sec. 3.4, the
    equation of ``L_nce``).

    For every query pixel ``i`` and retrieved object ``k``, the solver's
    match ``t_i = argmax_l T_k(i, l)`` is the positive and every other
    pixel of object ``k`` a negative (``cost``, ``plan``: ``[K, P, Q]``)::

        L_nce = -1/|r| sum_i log( exp(C_u(i, t_i) / tau) /
                                  sum_l exp(C_u(i, l) / tau) )

    averaged over query pixels (``1/|r|``) and objects. Gradients reach
    the student's features through the cost volume ``C_u`` only; ``T``
    (solved on the student's detached cost volume in the release, on the
    teacher's in the paper's text) gets none.

    Paper vs release: the release (``discobox_solov2_head.py``,
    ``corr_loss``: ``nce_loss(F.softmax(Cu, 2), T.argmax(2))``) applies the
    cross-entropy to ``softmax(C_u)``, i.e. a second softmax on
    probabilities, so its logits live in ``[0, 1]`` and, with ``P`` = 49
    object pixels, its gradient w.r.t. ``C_u`` is about ``1 / P`` of the
    single softmax's. That is the default (``release_double_softmax=True``,
    no temperature); ``release_double_softmax=False`` is the paper's
    InfoNCE with temperature ``tau``. Both average over query pixels and
    objects here; the release averages each query's cross-entropy over its
    ``K * P`` rows and the head averages over queries, the same.

    Args:
        temperature (float): ``tau`` of the paper's form (ignored by the
            release's). Defaults to 1.0.
        release_double_softmax (bool): Feed ``softmax(C_u)`` as logits
            (release). Defaults to True.
        loss_weight (float): ``alpha_nce`` (0.1 in the paper's SOLOv2 runs
            and the release's R-101/X-101 configs, 1.0 in its R-50 and VOC
            configs).
    """

    def __init__(self,
                 temperature: float = 1.0,
                 release_double_softmax: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f'DenseContrastiveLoss: temperature must be > 0, got '
                f'{temperature}')
        self.temperature = temperature
        self.release_double_softmax = release_double_softmax
        self.loss_weight = loss_weight

    def forward(self,
                cost: Tensor,
                plan: Tensor,
                weight: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            cost (Tensor): ``[K, P, Q]`` student cost volume ``C_u``.
            plan (Tensor): ``[K, P, Q]`` teacher correspondence ``T``.
            weight (Tensor, optional): ``[K, P]`` per-pixel weights
                (default: all ones).

        Returns:
            Tensor: Scalar loss.
        """
        if cost.shape != plan.shape:
            raise ValueError(f'DenseContrastiveLoss: cost {tuple(cost.shape)}'
                             f' and plan {tuple(plan.shape)} differ')
        if self.release_double_softmax:
            logits = cost.softmax(dim=2)
        else:
            logits = cost / self.temperature
        target = plan.detach().argmax(dim=2)
        nll = F.cross_entropy(
            logits.flatten(0, 1), target.flatten(),
            reduction='none').view(target.shape)
        if weight is None:
            loss = nll.mean()
        else:
            loss = (nll * weight).sum() / weight.sum().clamp_min(1e-6)
        return loss * self.loss_weight
