# Copyright (c) mmboxseg contributors. All rights reserved.
import torch
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

SCORE_MODES = ('paper', 'code')


def assign_pseudo_masks(pred_boxes: Tensor,
                        pred_scores: Tensor,
                        gt_boxes: Tensor,
                        iou_thr: float = 0.5,
                        score_thr: float = 0.0) -> Tensor:
    """Box-based pseudo-mask assignment (BoxTeacher Alg. 1).

    Predictions are visited in descending score (ties: lower index first);
    those with score below ``score_thr`` are dropped. Each is given to the
    not-yet-assigned ground truth with the highest IoU that is at least
    ``iou_thr`` (ties: lower ground-truth index).

    The public code marks a ground truth as taken with ``A_j > 0``, so a
    ground truth taken by prediction 0 can be taken again by a later
    prediction; here "taken" is ``A_j >= 0``. The loop is over predictions
    because the assignment is greedy; each step is vectorised over ground
    truths.

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
        best = int(torch.argmax(candidates))
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
