# Copyright (c) mmboxseg contributors. All rights reserved.
import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

from .box_supervision import masks_to_boxes


def merge_smaller_first(masks: Tensor, boxes: Tensor) -> Tensor:
    """BoxCaseg's "smaller object better" merge (Sec. 3.4).

    A pixel claimed by several masks goes to the instance with the smallest
    box ("the smaller object is usually within the box of the large one").
    As in the release, masks are painted in descending box area and a later
    painter wins; the release's order is ``argsort(areas)[::-1]``, the
    reverse of an ascending sort, so among equal areas the *earlier*
    instance is painted last and keeps the pixel.

    Args:
        masks (Tensor): ``[K, H, W]`` bool masks of one image.
        boxes (Tensor): ``[K, 4]`` xyxy boxes of the same instances.

    Returns:
        Tensor: ``[K, H, W]`` bool masks, pairwise disjoint, each a subset
        of its input mask.
    """
    if masks.shape[0] != boxes.shape[0]:
        raise ValueError(f'{masks.shape[0]} masks but {boxes.shape[0]} boxes')
    if masks.shape[0] <= 1:
        return masks.clone()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.sort(area, stable=True).indices.flip(0)
    # paint into one [H, W] owner map: K masked writes keep the memory at
    # one image, where a vectorised argmax over [K, H, W] ranks would need
    # 8 bytes per box and pixel (COCO images hold up to ~90 boxes)
    owner = torch.full(
        masks.shape[1:], -1, dtype=torch.long, device=masks.device)
    for k in order.tolist():
        owner[masks[k]] = k
    return masks & (
        owner[None] == torch.arange(len(masks), device=masks.device).view(
            -1, 1, 1))


def proxy_box_agreement(masks: Tensor, boxes: Tensor) -> Tensor:
    """BoxCaseg's proxy box agreement (Sec. 3.4): IoU between the tight box
    of each (merged) proxy mask and its ground-truth box, a lower bound of
    the mask IoU (Fig. 5). An empty mask agrees 0.

    Both boxes should live on the pixel grid: the tight box is
    ``(x_min, y_min, x_max + 1, y_max + 1)`` in pixels, so pass the
    ground-truth box as the integer pixel region it was pasted into
    (:func:`crop_region`), otherwise a mask filling its box agrees less
    than 1 for fractional boxes (0.82 for an 11.1 x 10.7 box touching
12 x 12 pixels, which the drop threshold of 0.95 would drop). The
    release gets the same effect with ``int()`` boxes and the ``+1`` IoU
    convention.

    Args:
        masks (Tensor): ``[K, H, W]`` bool masks.
        boxes (Tensor): ``[K, 4]`` xyxy ground-truth pixel regions.

    Returns:
        Tensor: ``[K]`` agreements in [0, 1].
    """
    if masks.shape[0] == 0:
        return boxes.new_zeros(0)
    tight = masks_to_boxes(masks).to(boxes.dtype)
    agreement = bbox_overlaps(tight, boxes, is_aligned=True)
    return agreement * masks.flatten(1).any(dim=1)


def paste_crop_probs(probs: Tensor, regions: Tensor, img_hw) -> Tensor:
    """Paste crop predictions back into the image (release ``deal_output``).

    Args:
        probs (Tensor): ``[K, h, w]`` probabilities of the crops, any size.
        regions (Tensor): ``[K, 4]`` integer crop regions ``x0, y0, x1, y1``
            (exclusive end) in the image.
        img_hw (tuple[int, int]): Image size.

    Returns:
        Tensor: ``[K, H, W]`` probabilities, zero outside each region.
    """
    h, w = img_hw
    out = probs.new_zeros((len(probs), h, w))
    for k, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        out[k, y0:y1, x0:x1] = F.interpolate(
            probs[k][None, None],
            size=(y1 - y0, x1 - x0),
            mode='bilinear',
            align_corners=False)[0, 0]
    return out
