# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmboxseg.models.utils.weight_transfer import WeightTransfer
from mmboxseg.registry import MODELS


def _feature_layer(in_channels: int, channels: int,
                   norm_cfg: dict) -> nn.Module:
    # BoxCaseg's ``last_layer``: 1x1 conv + BN + ReLU before the output conv
    return ConvModule(in_channels, channels, 1, norm_cfg=norm_cfg)


@MODELS.register_module()
class BoxCasegHead(BaseModule):
    """The three segmentation heads of BoxCaseg (Fig. 4).

    Multi-level features are resized to the finest given level and
    concatenated (HRNetV2's representation: 48+96+192+384 = 720 channels at
    stride 4 for HRNet-W48). Each head is ``1x1 conv + BN + ReLU + 1x1 conv
    -> 1`` ("exactly the same network architecture"):

    - the **weak** head, trained with the MIL loss on every image;
    - the **salient** head, trained with the pixel loss on salient images;
    - the **transferred** head, with no convolution weights of its own: as
      in the release, *both* its convolutions are generated from the
      *detached* weak ones, each by its own :class:`WeightTransfer`
      (``transfer_hidden`` for the ``1x1`` hidden conv, ``transfer_out``
      for the output conv), with a norm layer and ReLU of its own between
      them (the release's ``transfer1``, ``transfer_bn``, ``transfer2``).

    The salient and transferred logits are fused as ``alpha * s + (1 -
    alpha) * t``. Eq. (3) mixes probabilities; the release mixes logits
    (``fcn_ratio``), which is followed here, so the pixel loss is a binary
    cross-entropy with logits of the fused map.

    In training the release runs the salient and transferred heads on the
    salient images of the batch only, so their norm statistics are those of
    salient images; ``forward(feats, select)`` does the same.

    Args:
        in_channels (Sequence[int]): Channels of the used feature levels.
        in_index (Sequence[int]): Which backbone outputs to use.
        channels (int): Hidden channels of every head. The release uses the
            concatenated width (720); the toy config a narrower head.
        alpha (float): Weight of the salient head in the fusion (0.7 on VOC,
            0.6 on COCO in the release).
        norm_cfg (dict): Norm of the hidden layers. Defaults to BN.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 in_index: Sequence[int],
                 channels: int,
                 alpha: float = 0.7,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(in_index):
            raise ValueError(f'in_channels {list(in_channels)} and in_index '
                             f'{list(in_index)} must have the same length')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
        self.in_index = list(in_index)
        self.alpha = alpha
        total = sum(in_channels)
        self.weak_feat = _feature_layer(total, channels, norm_cfg)
        self.weak_out = nn.Conv2d(channels, 1, 1)
        self.salient_feat = _feature_layer(total, channels, norm_cfg)
        self.salient_out = nn.Conv2d(channels, 1, 1)
        self.transfer_hidden = WeightTransfer(
            total, with_bias=self.weak_feat.conv.bias is not None)
        self.transfer_norm = build_norm_layer(norm_cfg, channels)[1]
        self.transfer_out = WeightTransfer(channels)

    def fuse_inputs(self, feats: Sequence[Tensor]) -> Tensor:
        """``[N, sum(in_channels), h, w]`` at the first used level's size."""
        used = [feats[i] for i in self.in_index]
        size = used[0].shape[-2:]
        return torch.cat([used[0]] + [
            F.interpolate(f, size=size, mode='bilinear', align_corners=False)
            for f in used[1:]
        ], 1)

    def transferred(self, x: Tensor) -> Tensor:
        """Logits ``[N, 1, h, w]`` of the transferred head on fused inputs
        ``[N, sum(in_channels), h, w]``."""
        weak_conv = self.weak_feat.conv
        weight, bias = self.transfer_hidden(weak_conv.weight, weak_conv.bias)
        hidden = F.relu(self.transfer_norm(F.conv2d(x, weight, bias)))
        weight, bias = self.transfer_out(self.weak_out.weight,
                                         self.weak_out.bias)
        return F.conv2d(hidden, weight, bias)

    def forward(self,
                feats: Sequence[Tensor],
                select: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """
        Args:
            feats (Sequence[Tensor]): Backbone outputs, ``[N, C_l, h_l, w_l]``.
            select (Tensor, optional): ``[N]`` bool; when given, the salient
                and transferred heads run on these samples only.

        Returns:
            dict[str, Tensor]: ``[N, 1, h, w]`` ``weak`` logits and
            ``[M, 1, h, w]`` ``salient``, ``transferred`` and their fusion
            ``fused`` (``M = N`` without ``select``).
        """
        x = self.fuse_inputs(feats)
        weak = self.weak_out(self.weak_feat(x))
        if select is not None:
            x = x[select]
        salient = self.salient_out(self.salient_feat(x))
        transferred = self.transferred(x)
        fused = self.alpha * salient + (1.0 - self.alpha) * transferred
        return dict(
            weak=weak, salient=salient, transferred=transferred, fused=fused)
