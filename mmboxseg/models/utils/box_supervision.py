# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxInst supervision targets: stride-4 box masks and colour similarity.

Both follow AdelaiDet (``adet/modeling/condinst/condinst.py``); everything is
vectorised over boxes and images and stays on the input's device.
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmdet.models.utils.misc import unfold_wo_center
from torch import Tensor


def strided_box_masks(bboxes: Tensor,
                      out_size: Sequence[int],
                      stride: int = 4) -> Tensor:
    """Box masks sampled at ``[stride // 2::stride]`` of the padded image.

    AdelaiDet fills ``mask[int(y1):int(y2 + 1), int(x1):int(x2 + 1)] = 1``
    at full resolution and keeps every ``stride``-th pixel starting at
    ``stride // 2``.  Here the sampled pixel centres are compared with the
    same integer bounds directly, without building the full-resolution
    mask: identical output for boxes with non-negative coordinates (ours are
    clipped to the image).  Unlike Python slicing, a negative bound never
    wraps around.

    Args:
        bboxes (Tensor): ``[G, 4]`` boxes (x1, y1, x2, y2) in pixels of the
            padded input.
        out_size (tuple[int]): ``(H_s, W_s)``, the strided mask size.
        stride (int): Mask output stride. Defaults to 4.

    Returns:
        Tensor: ``[G, H_s, W_s]`` bool masks.
    """
    h, w = out_size
    start = stride // 2
    device = bboxes.device
    ys = torch.arange(h, device=device) * stride + start
    xs = torch.arange(w, device=device) * stride + start
    bounds = bboxes.floor().long()
    y_in = (ys[None] >= bounds[:, 1:2]) & (ys[None] < bounds[:, 3:4] + 1)
    x_in = (xs[None] >= bounds[:, 0:1]) & (xs[None] < bounds[:, 2:3] + 1)
    return y_in[:, :, None] & x_in[:, None, :]


def strided_image_masks(img_shapes: Tensor,
                        ori_heights: Tensor,
                        out_size: Sequence[int],
                        stride: int = 4,
                        bottom_pixels_removed: int = 0) -> Tensor:
    """Valid-pixel masks of a padded batch, sampled like the box masks.

    The bottom ``int(bottom_pixels_removed * img_h / ori_h)`` rows of each
    (resized) image are marked invalid, as AdelaiDet does to skip the
    unlabelled bottom strip of COCO images (``BOTTOM_PIXELS_REMOVED=10``).
    mmdet 3.3.0 scales by the padded batch height instead of the original
    height; we follow AdelaiDet.

    Args:
        img_shapes (Tensor): ``[B, 2]`` (h, w) of each resized image.
        ori_heights (Tensor): ``[B]`` original image heights.
        out_size (tuple[int]): ``(H_s, W_s)``.
        stride (int): Mask output stride.
        bottom_pixels_removed (int): Rows removed at the original scale.

    Returns:
        Tensor: ``[B, H_s, W_s]`` bool.
    """
    h, w = out_size
    device = img_shapes.device
    img_h, img_w = img_shapes[:, 0], img_shapes[:, 1]
    removed = (bottom_pixels_removed * img_h.double() /
               ori_heights.double()).floor().long()
    valid_h = img_h - removed
    start = stride // 2
    ys = torch.arange(h, device=device) * stride + start
    xs = torch.arange(w, device=device) * stride + start
    return (ys[None, :, None] < valid_h[:, None, None]) & \
        (xs[None, None, :] < img_w[:, None, None])


def color_similarity(lab: Tensor,
                     image_masks: Tensor,
                     kernel_size: int = 3,
                     dilation: int = 2,
                     theta: float = 2.0) -> Tensor:
    """Colour similarity of every pixel to its neighbours (BoxInst Eq. 7).

    ``S_e = exp(-||c_i - c_j|| / theta)`` with LAB colours, times the
    validity of the neighbour ``j`` (padding and removed rows give 0), as
    in AdelaiDet's ``get_images_color_similarity``.

    Args:
        lab (Tensor): ``[B, 3, H, W]`` LAB images at mask stride.
        image_masks (Tensor): ``[B, H, W]`` valid-pixel masks.
        kernel_size (int): Neighbourhood size k. Defaults to 3.
        dilation (int): Neighbourhood dilation. Defaults to 2.
        theta (float): Eq. 7's theta (AdelaiDet multiplies by 0.5).

    Returns:
        Tensor: ``[B, k*k - 1, H, W]`` similarities in ``[0, 1]``.
    """
    unfolded = unfold_wo_center(
        lab, kernel_size=kernel_size, dilation=dilation)
    diff = lab[:, :, None] - unfolded
    # sqrt(sum of squares): the same L2 norm as torch.norm(dim=1), several
    # times faster on the CPU for this [B, 3, K, H, W] layout
    distance = diff.square().sum(dim=1).sqrt()
    similarity = torch.exp(-distance / theta)
    neighbour_valid = unfold_wo_center(
        image_masks[:, None].to(lab.dtype),
        kernel_size=kernel_size,
        dilation=dilation)[:, 0]
    return similarity * neighbour_valid


def downsample_uint8_images(images: Sequence[Tensor],
                            batch_shape: Sequence[int], stride: int) -> Tensor:
    """Zero-pad images to ``batch_shape``, average-pool by ``stride`` and
    truncate back to integers, as AdelaiDet does before ``rgb2lab`` (it pools
    the zero-padded uint8 batch and casts with ``.byte()``).

    Each image is pooled on its own, padded only to a multiple of
    ``stride``: cells that lie wholly in the padding pool to 0 either way,
    so the full-resolution padded batch is never built.

    Args:
        images (list[Tensor]): ``[3, h_i, w_i]`` values in ``[0, 255]``.
        batch_shape (tuple[int]): ``(H, W)``, multiples of ``stride``.
        stride (int): Pooling stride.

    Returns:
        Tensor: ``[B, 3, H // stride, W // stride]`` float, integer-valued.
    """
    height, width = batch_shape
    pooled = images[0].new_zeros(
        (len(images), 3, height // stride, width // stride),
        dtype=torch.float32)
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        img = F.pad(img.float(), (0, -w % stride, 0, -h % stride))
        cell = F.avg_pool2d(img[None], stride, stride)[0]
        pooled[i, :, :cell.shape[1], :cell.shape[2]] = cell
    return pooled.floor()


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight ``[K, 4]`` boxes ``(x_min, y_min, x_max + 1, y_max + 1)`` of
    ``[K, h, w]`` bool masks; all-zero for an empty mask. The output of
    mmdet's ``mask2bbox``, without its per-mask Python loop."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[-2:]
    y1 = rows.float().argmax(dim=1)
    y2 = h - rows.flip(1).float().argmax(dim=1)
    x1 = cols.float().argmax(dim=1)
    x2 = w - cols.flip(1).float().argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    return boxes * rows.any(dim=1, keepdim=True)
