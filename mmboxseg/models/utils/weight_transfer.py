# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmboxseg.registry import MODELS


@MODELS.register_module()
class WeightTransfer(nn.Module):
    """Weight-transfer function of BoxCaseg Sec. 3.3.2 (after Mask^X R-CNN).

    Generates the parameters of the transferred head's output layer, a
    ``1 x 1`` convolution ``C -> 1``, from those of the weak head's output
    layer: ``w_t = MLP(w_weak)`` with ``MLP = Linear(C, 4C) -> LeakyReLU(0.1)
    -> Linear(4C, C)`` and ``b_t = k * b_weak + c`` with learned scalars
    ``k`` and ``c`` (the release's ``Transfer`` module; the paper only says
    "a two-layer MLP with leaky ReLU"). The inputs are detached here, so the
    pixel loss trains the MLP but never reaches the weak head ("a single
    direction process").

    Args:
        channels (int): ``C``, input channels of the output convolution.
        hidden_ratio (int): Hidden width of the MLP in units of ``C``.
            Defaults to 4.
        negative_slope (float): Of the leaky ReLU. Defaults to 0.1.
    """

    def __init__(self,
                 channels: int,
                 hidden_ratio: int = 4,
                 negative_slope: float = 0.1) -> None:
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden_ratio * channels),
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden_ratio * channels, channels))
        self.bias_scale = nn.Parameter(torch.ones(1))
        self.bias_shift = nn.Parameter(torch.zeros(1))

    def forward(self, weight: Tensor, bias: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            weight (Tensor): ``[1, C, 1, 1]`` weak output-layer weight.
            bias (Tensor): ``[1]`` weak output-layer bias.

        Returns:
            tuple[Tensor, Tensor]: ``[1, C, 1, 1]`` weight and ``[1]`` bias
            of the transferred output layer.
        """
        if weight.shape != (1, self.channels, 1, 1):
            raise ValueError(f'expected a [1, {self.channels}, 1, 1] weight, '
                             f'got {tuple(weight.shape)}')
        new_weight = self.mlp(weight.detach().flatten(1))
        new_bias = self.bias_scale * bias.detach() + self.bias_shift
        return new_weight.view_as(weight), new_bias
