# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmboxseg.registry import MODELS


@MODELS.register_module()
class WeightTransfer(nn.Module):
    """Weight-transfer function of BoxCaseg Sec. 3.3.2 (after Mask^X R-CNN).

    Generates the parameters of one convolution of the transferred head
    from those of the matching convolution of the weak head. Every output
    filter ``w_o`` (flattened to ``in_c * kh * kw`` values) is mapped by the
    same two-layer MLP, ``MLP = Linear(D, 4D) -> LeakyReLU(0.1) ->
    Linear(4D, D)`` with ``D = in_c * kh * kw``; the bias becomes ``k * b +
    c`` with two learned scalars ``k`` and ``c``. This is the release's
    ``Transfer`` module, including its ``N(0, 0.01)`` initialisation of the
    MLP (the paper only says "a two-layer MLP with leaky ReLU"). The inputs
    are detached, so the pixel loss trains the MLP but never reaches the
    weak head ("a single direction process").

    Args:
        in_features (int): ``D = in_c * kh * kw`` of the source convolution.
        hidden_ratio (int): Hidden width of the MLP in units of ``D``.
            Defaults to 4.
        negative_slope (float): Of the leaky ReLU. Defaults to 0.1.
        init_std (float): Std of the normal init of the MLP weights and
            biases. Defaults to 0.01 (release).
        with_bias (bool): Whether the source conv has a bias (``k`` and
            ``c`` exist only then, so no parameter goes unused). Defaults to
            True.
    """

    def __init__(self,
                 in_features: int,
                 hidden_ratio: int = 4,
                 negative_slope: float = 0.1,
                 init_std: float = 0.01,
                 with_bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden_ratio * in_features),
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden_ratio * in_features, in_features))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.normal_(layer.bias, std=init_std)
        self.with_bias = with_bias
        if with_bias:
            self.bias_scale = nn.Parameter(torch.ones(1))
            self.bias_shift = nn.Parameter(torch.zeros(1))

    def forward(self, weight: Tensor,
                bias: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """
        Args:
            weight (Tensor): ``[out_c, in_c, kh, kw]`` weak conv weight with
                ``in_c * kh * kw == in_features``.
            bias (Tensor, optional): ``[out_c]`` weak conv bias, ``None``
                exactly when ``with_bias`` is False.

        Returns:
            tuple[Tensor, Tensor | None]: ``[out_c, in_c, kh, kw]`` weight and
            ``[out_c]`` bias of the transferred convolution.
        """
        if weight.dim() != 4 or weight[0].numel() != self.in_features:
            raise ValueError(
                f'expected a [out_c, in_c, kh, kw] weight with in_c*kh*kw = '
                f'{self.in_features}, got {tuple(weight.shape)}')
        if (bias is not None) != self.with_bias:
            raise ValueError(f'with_bias={self.with_bias} but the source conv '
                             f'{"has no" if bias is None else "has a"} bias')
        new_weight = self.mlp(weight.detach().flatten(1)).view_as(weight)
        new_bias = None if bias is None else \
            self.bias_scale * bias.detach() + self.bias_shift
        return new_weight, new_bias
