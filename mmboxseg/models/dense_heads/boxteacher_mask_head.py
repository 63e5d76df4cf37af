# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.models.utils import aligned_bilinear, empty_instances
from mmdet.utils import ConfigType, InstanceList
from torch import Tensor

from mmboxseg.registry import MODELS
from .box_sup_mask_head import BoxSupMaskHead

TEST_SCORES = ('mask_aware', 'detection')


@MODELS.register_module()
class BoxTeacherMaskHead(BoxSupMaskHead):
    """BoxInst mask head plus BoxTeacher's noise-aware pseudo-mask loss.

    On top of BoxInst's projection and pairwise terms, for the sampled
    proposals ``i`` of the batch with pseudo mask ``g_i``, box mask ``b_i``
    and mask-aware score ``s_i`` of their ground truth (written by
    :class:`mmboxseg.models.detectors.BoxTeacher` into
    ``gt_instances.pseudo_masks`` / ``pseudo_scores``; 0 when the ground
    truth got no pseudo mask), Eq. 2:

    ``loss_pseudo_mask = w(t) / N_p * sum_i s_i * lambda_p * dice(p_i, g_i)``
    ``loss_pseudo_affinity = w(t) / N_p * sum_i s_i * lambda_a * l_i``

    with ``l_i`` the noise-reduced affinity loss (Eqs. 3-5,
    :class:`NoiseReducedAffinityLoss`), ``lambda_p = 0.5``,
    ``lambda_a = 0.1`` (the losses' ``loss_weight``), and
    ``w(t) = min(t / pseudo_warmup_iters, 1)`` the linear warm-up (10k
    iterations). ``N_p`` is the number of proposals with ``s_i > 0``
    (the public code's ``FIX_REDUCTION=True``; the paper: "valid pseudo
    masks"), at least 1; ``fix_reduction=False`` uses ``sum_i s_i`` as the
    code's other branch.

    The dice is CondInst's ``1 - 2 sum(p g) / (sum(p^2) + sum(g^2) + 1e-5)``
    on probabilities (mmdet ``DiceLoss``, ``eps=5e-6`` per sum).

    **Test scores** (``test_score='mask_aware'``, the public code's
    ``postprocess``, ``condinst.py:806-814``, which its evaluation uses):
    with ``c = sqrt(cls * ctr)`` (AdelaiDet's FCOS score; mmdet's detection
    scores are ``cls * ctr``) and ``mbar = sum(P 1[P > mask_thr]) /
    (sum(1[P > mask_thr]) + 1e-6)`` over the mask probabilities ``P``
    ``[n, h, w]`` at the output resolution (after mmdet's up-sampling and,
    with ``rescale``, the resize to the original image), each detection's
    score becomes ``sqrt(c * mbar)``. ``test_score='detection'`` keeps
    mmdet's ``cls * ctr``. The paper does not describe a test-time score.

    Args:
        pseudo_warmup_iters (int): Warm-up of the pseudo-mask losses.
        fix_reduction (bool): Normaliser choice, see above.
        loss_pseudo_mask (dict): Pixel loss (dice, weight 0.5).
        loss_pseudo_affinity (dict): Affinity loss (weight 0.1).
        test_score (str): ``'mask_aware'`` (default) or ``'detection'``.
        **kwargs: :class:`BoxSupMaskHead` arguments.
    """

    def __init__(self,
                 *args,
                 pseudo_warmup_iters: int = 10000,
                 fix_reduction: bool = True,
                 loss_pseudo_mask: ConfigType = dict(
                     type='DiceLoss',
                     use_sigmoid=True,
                     activate=True,
                     eps=5e-6,
                     loss_weight=0.5),
                 loss_pseudo_affinity: ConfigType = dict(
                     type='NoiseReducedAffinityLoss',
                     kernel_size=3,
                     dilation=2,
                     smooth_kernel=3,
                     affinity_thresh=0.5,
                     loss_weight=0.1),
                 test_score: str = 'mask_aware',
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if test_score not in TEST_SCORES:
            raise ValueError(f'BoxTeacherMaskHead: test_score must be one of '
                             f'{TEST_SCORES}, got {test_score!r}')
        self.test_score = test_score
        if self.supervision == 'mask':
            raise ValueError("BoxTeacherMaskHead needs supervision='box' or "
                             "'mixed'")
        self.pseudo_warmup_iters = pseudo_warmup_iters
        self.fix_reduction = fix_reduction
        self.loss_pseudo_mask = MODELS.build(loss_pseudo_mask)
        self.loss_pseudo_affinity = MODELS.build(loss_pseudo_affinity)

    def pseudo_warmup(self) -> float:
        """Linear warm-up factor ``min(t / T, 1)`` at the current step."""
        if self.pseudo_warmup_iters <= 0:
            return 1.0
        return min(float(self._iter) / self.pseudo_warmup_iters, 1.0)

    def extra_losses(self, preds: Optional[Tensor], sampled: list,
                     has_mask: Optional[Tensor], zero: Tensor,
                     neg_log_same: Optional[Tensor]) -> dict:
        """Eq. 2 on the sampled proposals; see the class docstring.

        Only proposals with ``s_i > 0`` are evaluated (the others weigh 0
        in both sums), and BoxInst's ``-log P(same label)`` tensor is reused
        when the kernels agree: at COCO resolution it is the largest tensor
        of the mask losses.
        """
        zeros = dict(loss_pseudo_mask=zero, loss_pseudo_affinity=zero)
        if preds is None:
            return zeros
        targets, scores, boxes, valids = [], [], [], []
        for gt_instances, gt_inds, valid, _ in sampled:
            if 'pseudo_masks' not in gt_instances or \
                    'pseudo_scores' not in gt_instances:
                raise KeyError(
                    'BoxTeacherMaskHead: gt_instances lack `pseudo_masks` / '
                    '`pseudo_scores`; they are written by the BoxTeacher '
                    'detector from its teacher')
            targets.append(gt_instances.pseudo_masks[gt_inds])
            scores.append(gt_instances.pseudo_scores[gt_inds])
            boxes.append(gt_instances.box_masks[gt_inds])
            if valid is None:
                valid = torch.ones_like(boxes[-1][0])
            valids.append(valid[None].expand_as(boxes[-1]))
        targets, scores = torch.cat(targets), torch.cat(scores)
        if targets.shape != preds.shape:
            raise ValueError(
                f'pseudo masks {tuple(targets.shape[1:])} and mask '
                f'predictions {tuple(preds.shape[1:])} differ in size')
        # instances supervised by a real mask (mixed) take no pseudo loss
        scores = scores.to(preds.dtype) * (~has_mask).to(preds.dtype)
        if self.fix_reduction:
            num_valid = (scores > 0).sum().clamp(min=1).to(preds.dtype)
        else:
            num_valid = scores.sum() + 1e-6
        keep = scores > 0
        if not keep.any():
            return zeros
        loss_aff = self.loss_pseudo_affinity
        if neg_log_same is not None and (getattr(
                loss_aff, 'kernel_size',
                None), getattr(loss_aff, 'dilation',
                               None)) == (self.loss_pairwise.kernel_size,
                                          self.loss_pairwise.dilation):
            neg_log_same = neg_log_same[keep]
        else:
            neg_log_same = None
        preds, targets, scores = preds[keep], targets[keep], scores[keep]
        boxes, valids = torch.cat(boxes)[keep], torch.cat(valids)[keep]
        warmup = self.pseudo_warmup()
        dice = self.loss_pseudo_mask(
            preds, targets.to(preds.dtype), reduction_override='none')
        affinity = loss_aff(
            preds, targets, boxes, valids, neg_log_same=neg_log_same)
        return dict(
            loss_pseudo_mask=(scores * dice).sum() / num_valid * warmup,
            loss_pseudo_affinity=(scores * affinity).sum() / num_valid *
            warmup)

    def predict_by_feat(self,
                        mask_preds: List[Tensor],
                        results_list: InstanceList,
                        batch_img_metas: List[dict],
                        rescale: bool = True,
                        **kwargs) -> InstanceList:
        """mmdet's CondInst mask prediction, plus the mask-aware re-scoring
        of the public code (class docstring) when ``test_score`` is
        ``'mask_aware'``.

        Args:
            mask_preds (list[Tensor]): Per image ``[n, H/s, W/s]`` mask
                logits on the stride-``s`` grid of the padded batch.
            results_list (list[InstanceData]): Detections (``bboxes``,
                ``scores`` = ``cls * ctr``, ``labels``), per image.
            batch_img_metas (list[dict]): ``img_shape``, ``ori_shape``,
                ``scale_factor``.
            rescale (bool): Boxes and masks to the original image.

        Returns:
            list[InstanceData]: With ``masks`` ``[n, h, w]`` (bool) and
            re-scored ``scores``.
        """
        if self.test_score == 'detection':
            return super().predict_by_feat(mask_preds, results_list,
                                           batch_img_metas, rescale, **kwargs)
        cfg = self.test_cfg
        for img_id, img_meta in enumerate(batch_img_metas):
            results = results_list[img_id]
            mask_pred = mask_preds[img_id]
            if results.bboxes.shape[0] == 0 or mask_pred.shape[0] == 0:
                results_list[img_id] = empty_instances(
                    [img_meta],
                    results.bboxes.device,
                    task_type='mask',
                    instance_results=[results])[0]
                continue
            probs = self.mask_probabilities(mask_pred, img_meta, rescale)
            if rescale:
                results.bboxes /= results.bboxes.new_tensor(
                    img_meta['scale_factor']).repeat((1, 2))
            masks = probs > cfg.mask_thr
            positive = masks.to(probs.dtype)
            mean = (probs * positive).flatten(1).sum(1) / (
                positive.flatten(1).sum(1) + 1e-6)
            results.scores = (results.scores.clamp(min=0).sqrt() * mean).sqrt()
            results.masks = masks
        return results_list

    def mask_probabilities(self, mask_pred: Tensor, img_meta: dict,
                           rescale: bool) -> Tensor:
        """``[n, h, w]`` probabilities as mmdet's
        ``CondInstMaskHead._predict_by_feat_single`` computes them before
        thresholding: sigmoid, ``aligned_bilinear`` by the output stride,
        crop to ``img_shape``, bilinear resize to ``ori_shape`` when
        ``rescale`` (AdelaiDet's ``postprocess`` does the same)."""
        img_h, img_w = img_meta['img_shape'][:2]
        probs = aligned_bilinear(mask_pred.sigmoid()[None],
                                 self.mask_out_stride)[:, :, :img_h, :img_w]
        if rescale:
            probs = F.interpolate(
                probs,
                tuple(img_meta['ori_shape'][:2]),
                mode='bilinear',
                align_corners=False)
        return probs[0]
