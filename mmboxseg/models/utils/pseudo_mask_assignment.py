# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.utils import aligned_bilinear
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

SCORE_MODES = ('paper', 'code')
Size = Tuple[int, int]


def teacher_scale_size(height: int, width: int,
                       scale: Sequence[int]) -> Tuple[int, int]:
    """Size of an ``height x width`` image resized to the test scale as
    the public code's ``resize_images`` (``condinst.py:387-409``).

    ``scale = (max_size, min_size)`` (mmdet's ``(long, short)`` order,
    e.g. ``(1333, 800)``): the short side goes to ``min_size`` unless the
    long side would then exceed ``max_size``; the sides are rounded with
    ``int(x + 0.5)``. Up-scaling is allowed (the student's 640-800
    multi-scale images are enlarged to 800).

    Returns:
        tuple[int, int]: ``(new_height, new_width)``.
    """
    max_size, min_size = scale
    factor = min_size / min(height, width)
    if height < width:
        new_h, new_w = float(min_size), factor * width
    else:
        new_h, new_w = factor * height, float(min_size)
    if max(new_h, new_w) > max_size:
        factor = max_size / max(new_h, new_w)
        new_h, new_w = new_h * factor, new_w * factor
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_to_teacher_scale(inputs: Tensor, img_shapes: Sequence[Size],
                            scale: Sequence[int],
                            size_divisor: int) -> Tuple[Tensor, List[Size]]:
    """The teacher's input: each normalised image of the padded batch
    ``inputs`` ``[B, C, H, W]`` (valid region ``img_shapes[b]``) resized
    bilinearly (``align_corners=False``) to the test scale
    (:func:`teacher_scale_size`) and re-padded with 0 to a multiple of
    ``size_divisor``, as ``resize_images`` + ``ImageList.from_tensors`` in
    the public code's ``forward_teacher``.

    Returns:
        tuple: ``[B, C, H', W']`` batch and the ``(h', w')`` of each image.
    """
    resized, sizes = [], []
    for image, (h, w) in zip(inputs, img_shapes):
        size = teacher_scale_size(h, w, scale)
        image = image[None, :, :h, :w]
        if size != (h, w):
            image = F.interpolate(
                image, size, mode='bilinear', align_corners=False)
        resized.append(image[0])
        sizes.append(size)
    pad_h = -(-max(s[0] for s in sizes) // size_divisor) * size_divisor
    pad_w = -(-max(s[1] for s in sizes) // size_divisor) * size_divisor
    batch = inputs.new_zeros((len(resized), inputs.size(1), pad_h, pad_w))
    for i, image in enumerate(resized):
        batch[i, :, :image.size(1), :image.size(2)] = image
    return batch, sizes


def teacher_mask_statistics(
        mask_probs: Tensor,
        teacher_size: Tuple[int, int],
        student_size: Tuple[int, int],
        grid_size: Tuple[int, int],
        stride: int = 4,
        mask_thr: float = 0.5,
        gt_boxes: Optional[Tensor] = None,
        chunk: int = 16,
        eps: float = 1e-6) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Teacher masks mapped to the student's image, as the public code's
    ``postprocess`` (``condinst.py:789-813``) and ``add_pseudo_bitmasks``
    (657-680), without keeping the full-resolution maps.

    The probabilities ``m`` on the teacher's stride-``stride`` grid are
    up-sampled with CondInst's ``aligned_bilinear`` (factor ``stride``),
    cropped to the teacher image ``teacher_size``, resized bilinearly to the
    student image ``student_size`` ``(h, w)`` (a no-op when the sizes are
    equal) to give ``P`` ``[n, h, w]``. From ``P``:

    - ``grid``: ``P`` at the student's stride-``stride`` sample points
      ``[stride // 2::stride]`` of the padded batch, zero outside the image,
      ``[n, *grid_size]`` (the code pads the binary full-resolution mask and
      samples it there; thresholding commutes with sampling);
    - ``mean``: ``sum(P 1[P > tau]) / (sum(1[P > tau]) + eps)`` ``[n]``, the
      mask term of the code's mask-aware score (box-free);
    - ``box_mean`` (when ``gt_boxes`` ``[G, 4]`` is given): the same mean
      restricted to each ground-truth box (Eq. 1 of the paper), ``[n, G]``;
      box pixels are rows ``int(y1)..int(y2)`` and columns
      ``int(x1)..int(x2)`` (AdelaiDet's box masks).

    Processed ``chunk`` masks at a time to bound the memory (``chunk * h *
    w`` floats).

    Args:
        mask_probs (Tensor): ``[n, Ht/s, Wt/s]`` teacher probabilities.
        teacher_size (tuple): ``(h_t, w_t)`` of the teacher image.
        student_size (tuple): ``(h, w)`` of the student image.
        grid_size (tuple): ``(H/s, W/s)`` of the student's padded batch.

    Returns:
        tuple[Tensor, Tensor, Tensor | None]: ``grid``, ``mean``,
        ``box_mean``.
    """
    (th, tw), (h, w) = teacher_size, student_size
    start = stride // 2
    n = mask_probs.size(0)
    grid = mask_probs.new_zeros((n, *grid_size))
    mean = mask_probs.new_zeros((n, ))
    box_mean = None
    if gt_boxes is not None:
        box_mean = mask_probs.new_zeros((n, gt_boxes.size(0)))
        bounds = gt_boxes.float().floor().long()
        ys = torch.arange(h, device=mask_probs.device)
        xs = torch.arange(w, device=mask_probs.device)
        rows = ((ys[None] >= bounds[:, 1:2]) &
                (ys[None] <= bounds[:, 3:4])).to(mask_probs.dtype)
        cols = ((xs[None] >= bounds[:, 0:1]) &
                (xs[None] <= bounds[:, 2:3])).to(mask_probs.dtype)
    gh = min(len(range(start, h, stride)), grid_size[0])
    gw = min(len(range(start, w, stride)), grid_size[1])
    for first in range(0, n, chunk):
        part = aligned_bilinear(mask_probs[None, first:first + chunk],
                                stride)[:, :, :th, :tw]
        if (th, tw) != (h, w):
            part = F.interpolate(
                part, (h, w), mode='bilinear', align_corners=False)
        part = part[0]
        last = first + part.size(0)
        grid[first:last, :gh, :gw] = part[:, start::stride,
                                          start::stride][:, :gh, :gw]
        positive = (part > mask_thr).to(part.dtype)
        kept = part * positive
        mean[first:last] = kept.flatten(1).sum(1) / (
            positive.flatten(1).sum(1) + eps)
        if box_mean is not None:
            # sum over each box of a map = rows^T (map) cols, per mask
            num = torch.einsum('nyx,gx,gy->ng', kept, cols, rows)
            den = torch.einsum('nyx,gx,gy->ng', positive, cols, rows)
            box_mean[first:last] = num / (den + eps)
    return grid, mean, box_mean


def assign_pseudo_masks(pred_boxes: Tensor,
                        pred_scores: Tensor,
                        gt_boxes: Tensor,
                        iou_thr: float = 0.5,
                        score_thr: float = 0.0) -> Tensor:
    """Box-based pseudo-mask assignment (BoxTeacher Alg. 1).

    Predictions are visited in descending score (ties: lower index first);
    those with score below ``score_thr`` are dropped. Each is given to the
    not-yet-assigned ground truth with the highest IoU that is at least
    ``iou_thr``; on equal IoU the *higher* ground-truth index wins, as in
    the public code (``boxteacher.py`` ``pseudo_labeling``: its inner loop
    skips ``iou < max_iou`` only, so a later equal IoU replaces the
    earlier one).

    Bug fixed on purpose: the public code marks a ground truth as taken
    with ``gtm[j] > 0`` (``boxteacher.py:62``, ``gtm`` starts at -1), so a
    ground truth taken by prediction 0 (the highest-scoring detection of
    the teacher's NMS output) can be taken again by a later prediction,
    which then overwrites its pseudo mask; here "taken" is ``A_j >= 0``
    (Alg. 1 of the paper). The loop is over predictions because the
    assignment is greedy; each step is vectorised over ground truths.

    Args:
        pred_boxes (Tensor): ``[N, 4]`` predicted boxes (x1, y1, x2, y2).
        pred_scores (Tensor): ``[N]`` scores used for order and filtering.
        gt_boxes (Tensor): ``[K, 4]`` ground-truth boxes.
        iou_thr (float): tau_iou. Defaults to 0.5.
        score_thr (float): tau_c. Defaults to 0.0 (public code; the paper's
            naive self-training uses 0.05).

    Returns:
        Tensor: ``[K]`` long, the prediction assigned to each ground truth
        or -1.
    """
    num_gts = gt_boxes.size(0)
    assigned = torch.full((num_gts, ),
                          -1,
                          dtype=torch.long,
                          device=gt_boxes.device)
    if num_gts == 0 or pred_boxes.size(0) == 0:
        return assigned
    # the greedy loop is short (<= max_per_img predictions); run it on the
    # CPU after one transfer instead of syncing the device per prediction
    ious = bbox_overlaps(pred_boxes.float(), gt_boxes.float()).cpu()
    scores = pred_scores.detach().cpu()
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[scores[order] >= score_thr]
    result = torch.full((num_gts, ), -1, dtype=torch.long)
    free = torch.ones(num_gts, dtype=torch.bool)
    for i in order.tolist():
        candidates = torch.where(free & (ious[i] >= iou_thr), ious[i],
                                 ious.new_tensor(-1.0))
        # the last maximum: the public code's tie rule (see above)
        best = num_gts - 1 - int(torch.argmax(candidates.flip(0)))
        if candidates[best] < 0:
            continue
        result[best] = i
        free[best] = False
        if not free.any():
            break
    assigned.copy_(result)
    return assigned


def mask_aware_score(mask_probs: Tensor,
                     det_scores: Tensor,
                     box_masks: Tensor = None,
                     mask_thr: float = 0.5,
                     mode: str = 'paper',
                     eps: float = 1e-6) -> Tensor:
    """Mask-aware confidence score (BoxTeacher Eq. 1).

    With ``mbar = sum(1[m > tau] m b) / (sum(1[m > tau] b) + eps)``, the mean
    probability of the mask's positive pixels inside the box mask ``b``:

    - ``mode='paper'``: ``s = sqrt(c * mbar)`` with ``b`` the ground-truth
      box the mask is assigned to (Eq. 1);
    - ``mode='code'``: the public code's loss weight
      ``s = sqrt(sqrt(c) * mbar)`` (``= c^1/4 mbar^1/2``) with no box (``b``
      = 1), computed before assignment.

    ``c`` is the detection confidence as in FCOS/AdelaiDet,
    ``sqrt(cls * ctr)``; mmdet's scores are ``cls * ctr``, so callers pass
    ``sqrt`` of them.

    Args:
        mask_probs (Tensor): ``[N, H, W]`` mask probabilities ``m``.
        det_scores (Tensor): ``[N]`` detection confidences ``c``.
        box_masks (Tensor, optional): ``[N, H, W]`` bool box masks
            (``mode='paper'``).
        mask_thr (float): tau_m. Defaults to 0.5.
        mode (str): ``'paper'`` or ``'code'``.

    Returns:
        Tensor: ``[N]`` scores in [0, 1].
    """
    if mode not in SCORE_MODES:
        raise ValueError(f'mode must be one of {SCORE_MODES}, got {mode!r}')
    positive = (mask_probs > mask_thr).float()
    if mode == 'paper':
        if box_masks is None:
            raise ValueError("mode='paper' needs the box masks")
        positive = positive * box_masks.float()
    mean_prob = (mask_probs * positive).flatten(1).sum(1) / (
        positive.flatten(1).sum(1) + eps)
    confidence = det_scores if mode == 'paper' else det_scores.sqrt()
    return (confidence * mean_prob).clamp(min=0).sqrt()


def release_mask_scores(det_scores: Tensor,
                        mean_probs: Tensor) -> Tuple[Tensor, Tensor]:
    """The public code's two mask-aware scores (``postprocess``,
    ``condinst.py:806-814``), from the detection confidence ``c`` =
    ``sqrt(cls * ctr)`` (AdelaiDet's FCOS score) and the mean probability
    ``mbar`` of the mask's positive pixels (box-free, see
    :func:`teacher_mask_statistics`), both ``[N]``:

    - ``weight = sqrt(sqrt(c) * mbar) = c^(1/4) mbar^(1/2)``
      (``results.mask_score``: the pseudo-mask loss weight ``s_i`` of
      Eq. 2 and the ``gt_masks_flags`` of ``pseudo_labeling``);
    - ``rank = sqrt(c * mbar)`` (``results.scores``: the order of Alg. 1
      and the evaluation score).

    The paper's Eq. 1 is ``sqrt(c * mbar_box)`` with ``mbar`` restricted to
    the ground-truth box, used for both (``score_mode='paper'``).

    Returns:
        tuple[Tensor, Tensor]: ``weight`` and ``rank``, ``[N]``.
    """
    c = det_scores.clamp(min=0)
    mean_probs = mean_probs.clamp(min=0)
    return (c.sqrt() * mean_probs).sqrt(), (c * mean_probs).sqrt()
