# Copyright (c) mmboxseg contributors. All rights reserved.
"""sRGB -> CIE-LAB in torch, batched, on the input's device."""
import torch
from torch import Tensor

# sRGB (D65) -> XYZ, the matrix scikit-image uses (``xyz_from_rgb``).
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# CIE standard illuminant D65, 2 degree observer (skimage's default).
_D65_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """Convert RGB images in ``[0, 255]`` to CIE-LAB.

    Follows ``skimage.color.rgb2lab`` (sRGB companding, D65 white point,
    2-degree observer) so that the BoxInst colour similarity matches
    AdelaiDet's, but runs batched in torch instead of per image in numpy.

    Args:
        rgb (Tensor): ``[B, 3, H, W]`` RGB values in ``[0, 255]`` (any
            float or integer dtype).

    Returns:
        Tensor: ``[B, 3, H, W]`` float32 (L, a, b); L in ``[0, 100]``.
    """
    if rgb.dim() != 4 or rgb.size(1) != 3:
        raise ValueError('rgb_to_lab expects a [B, 3, H, W] tensor, got '
                         f'shape {tuple(rgb.shape)}')
    x = rgb.float() / 255.0
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4),
                         x / 12.92)
    matrix = x.new_tensor(_XYZ_FROM_RGB)
    xyz = torch.einsum('ij,bjhw->bihw', matrix, linear)
    xyz = xyz / x.new_tensor(_D65_WHITE).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856,
                    xyz.clamp(min=0).pow(1.0 / 3.0),
                    7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=1)
    lab_l = 116.0 * fy - 16.0
    lab_a = 500.0 * (fx - fy)
    lab_b = 200.0 * (fy - fz)
    return torch.stack([lab_l, lab_a, lab_b], dim=1)
