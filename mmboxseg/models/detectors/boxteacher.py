# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, List, Tuple, Union

import torch
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet.utils import OptConfigType
from mmengine.structures import InstanceData
from torch import Tensor

from mmboxseg.models.utils import assign_pseudo_masks, mask_aware_score
from mmboxseg.models.utils.pseudo_mask_assignment import SCORE_MODES
from mmboxseg.registry import MODELS
from .ema_teacher_boxinst import EMATeacherBoxInst


@MODELS.register_module()
class BoxTeacher(EMATeacherBoxInst):
    """BoxTeacher (Cheng et al., CVPR 2023) over CondInst/BoxInst.

    The detector itself is the student; ``self.teacher`` is a BoxInst with
    the same architecture whose tensors are buffers
    (:func:`freeze_as_buffers`), updated only by
    :class:`mmboxseg.engine.hooks.EMATeacherHook` (momentum 0.999). It is in
    every checkpoint and restored on ``--resume``; the optimizer never sees
    it.

    One training step:

    1. the teacher (eval mode, no gradients) predicts boxes, scores and
       stride-4 mask probabilities on the teacher view (un-augmented
       colours);
    2. Alg. 1 assigns predictions to ground-truth boxes
       (:func:`assign_pseudo_masks`, IoU >= ``iou_thr``, score >=
       ``score_thr``); pseudo masks are the teacher masks thresholded at
       ``mask_thr`` and clipped to the ground-truth box mask;
    3. each assigned mask gets the mask-aware score of Eq. 1
       (:func:`mask_aware_score`, ``score_mode`` ``'paper'`` or ``'code'``);
    4. the student sees the strongly coloured view and is trained with the
       BoxInst losses plus the noise-aware pseudo-mask loss
       (:class:`BoxTeacherMaskHead`).

    Differences from the public code, on purpose: the teacher runs on the
    student's geometry (the code resizes its input to test scale), and in
    eval mode: mmdet's FCOS head only scales box predictions by the stride
    when not training, and eval-mode BN uses the (EMA) running statistics
    where the code's teacher uses batch statistics in its mask branch. The
    pseudo masks are read directly at the student's stride-4 grid (the code
    up-samples by 4 and samples ``[2::4]``).

    Args:
        pseudo_cfg (dict): ``iou_thr`` (0.5), ``score_thr`` (0.0),
            ``mask_thr`` (0.5), ``score_mode`` ('paper').
        inference_with (str): ``'teacher'`` (default, the code's
            ``USE_TEACHER_INFERENCE``) or ``'student'``.
        Other args: as mmdet's ``BoxInst``.
    """

    def __init__(self,
                 *args,
                 pseudo_cfg: OptConfigType = None,
                 inference_with: str = 'teacher',
                 **kwargs) -> None:
        super().__init__(*args, inference_with=inference_with, **kwargs)
        pseudo = dict(
            iou_thr=0.5, score_thr=0.0, mask_thr=0.5, score_mode='paper')
        unknown = set(pseudo_cfg or {}) - set(pseudo)
        if unknown:
            raise KeyError(f'BoxTeacher: unknown pseudo_cfg keys '
                           f'{sorted(unknown)}; known: {sorted(pseudo)}')
        pseudo.update(pseudo_cfg or {})
        if pseudo['score_mode'] not in SCORE_MODES:
            raise ValueError(f'BoxTeacher: pseudo_cfg.score_mode must be one '
                             f"of {SCORE_MODES}, got {pseudo['score_mode']!r}")
        for key in ('iou_thr', 'score_thr', 'mask_thr'):
            if not 0.0 <= pseudo[key] <= 1.0:
                raise ValueError(f'BoxTeacher: pseudo_cfg.{key} must be in '
                                 f'[0, 1], got {pseudo[key]}')
        self.pseudo_cfg = pseudo

    # -- training -----------------------------------------------------------
    @staticmethod
    def split_views(batch_inputs: Union[Tensor, Dict[str, Tensor]],
                    batch_data_samples: Union[SampleList, Dict[str,
                                                               SampleList]]):
        """``(teacher_inputs, teacher_samples, student_inputs,
        student_samples)``; a single view serves as both."""
        if isinstance(batch_inputs, dict):
            return (batch_inputs['teacher'], batch_data_samples['teacher'],
                    batch_inputs['student'], batch_data_samples['student'])
        return (batch_inputs, batch_data_samples, batch_inputs,
                batch_data_samples)

    def loss(
            self, batch_inputs: Union[Tensor, Dict[str, Tensor]],
            batch_data_samples: Union[SampleList, Dict[str,
                                                       SampleList]]) -> dict:
        self.check_teacher_initialised()
        t_inputs, t_samples, s_inputs, s_samples = self.split_views(
            batch_inputs, batch_data_samples)
        stats = self.add_pseudo_masks(t_inputs, t_samples, s_samples)
        losses = super().loss(s_inputs, s_samples)
        losses.update(stats)
        return losses

    @torch.no_grad()
    def teacher_predictions(
            self, inputs: Tensor,
            data_samples: SampleList) -> Tuple[List[InstanceData], list]:
        """Teacher boxes/scores (input scale) and ``[n, H/4, W/4]`` mask
        probabilities on the padded batch's stride-4 grid.

        Detections whose IoU with every ground-truth box is below
        ``iou_thr`` can never be assigned by Alg. 1; they are dropped before
        the mask head, which leaves the assignment unchanged and saves most
        of the teacher's mask work.
        """
        feats = self.teacher.extract_feat(inputs)
        results = self.teacher.bbox_head.predict(
            feats, data_samples, rescale=False)
        for i, (result, sample) in enumerate(zip(results, data_samples)):
            gt_boxes = get_box_tensor(sample.gt_instances.bboxes)
            if len(result) == 0 or len(gt_boxes) == 0:
                results[i] = result[:0]
                continue
            ious = bbox_overlaps(result.bboxes, gt_boxes.to(result.bboxes))
            results[i] = result[ious.max(
                dim=1)[0] >= self.pseudo_cfg['iou_thr']]
        mask_logits = self.teacher.mask_head(feats, results)[0]
        probs = []
        for logits, result in zip(mask_logits, results):
            if len(result) == 0:
                stride = self.teacher.mask_head.mask_out_stride
                probs.append(
                    inputs.new_zeros((0, inputs.shape[-2] // stride,
                                      inputs.shape[-1] // stride)))
            else:
                probs.append(logits.sigmoid())
        return results, probs

    def add_pseudo_masks(self, t_inputs: Tensor, t_samples: SampleList,
                         s_samples: SampleList) -> Dict[str, Tensor]:
        """Write ``pseudo_masks`` ``[G, H/4, W/4]`` (bool) and
        ``pseudo_scores`` ``[G]`` into the student samples' gt_instances,
        and keep them per image in ``last_pseudo_masks`` (see
        :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook`).

        Returns:
            dict[str, Tensor]: Logged statistics: the fraction of ground
            truths with a pseudo mask and their mean score.
        """
        cfg = self.pseudo_cfg
        results, probs = self.teacher_predictions(t_inputs, t_samples)
        # what PseudoMaskQualityHook scores after the step; the evaluation
        # masks ride along untouched, no loss reads them
        self.last_pseudo_masks = []
        num_gts = num_assigned = 0
        score_sum = t_inputs.new_zeros(())
        for result, prob, sample in zip(results, probs, s_samples):
            gt = sample.gt_instances
            box_masks = gt.box_masks
            if prob.shape[-2:] != box_masks.shape[-2:]:
                raise ValueError(
                    f'teacher masks {tuple(prob.shape[-2:])} and box masks '
                    f'{tuple(box_masks.shape[-2:])} differ in size')
            gt_boxes = get_box_tensor(gt.bboxes)
            pseudo = torch.zeros_like(box_masks)
            scores = prob.new_zeros(len(gt))
            matched = torch.zeros_like(scores, dtype=torch.bool)
            if len(result) and len(gt):
                assigned, scored = self.assign_and_score(
                    result, prob, gt_boxes, box_masks)
                matched = assigned >= 0
                binary = prob[assigned[matched]] > cfg['mask_thr']
                pseudo[matched] = binary & box_masks[matched]
                scores[matched] = scored
            gt.pseudo_masks = pseudo
            gt.pseudo_scores = scores
            self.last_pseudo_masks.append(
                dict(
                    masks=pseudo,
                    valid=matched,
                    eval_masks=gt.get('eval_masks'),
                    stride=self.mask_head.mask_out_stride))
            num_gts += len(gt)
            num_assigned += int(matched.sum())
            score_sum = score_sum + scores.sum()
        rate = num_assigned / max(num_gts, 1)
        return dict(
            pseudo_assigned=t_inputs.new_tensor(rate),
            pseudo_score=score_sum / max(num_assigned, 1))

    def assign_and_score(self, result: InstanceData, prob: Tensor,
                         gt_boxes: Tensor,
                         box_masks: Tensor) -> Tuple[Tensor, Tensor]:
        """Alg. 1 and Eq. 1 for one image.

        Args:
            result (InstanceData): Teacher ``bboxes`` ``[N, 4]`` and
                ``scores`` ``[N]`` (mmdet's ``cls * ctr``).
            prob (Tensor): ``[N, H, W]`` teacher mask probabilities.
            gt_boxes (Tensor): ``[G, 4]``.
            box_masks (Tensor): ``[G, H, W]`` ground-truth box masks.

        Returns:
            tuple[Tensor, Tensor]: ``[G]`` assigned prediction or -1, and
            the ``[M]`` scores of the ``M`` assigned ground truths.
        """
        cfg = self.pseudo_cfg
        confidence = result.scores.clamp(min=0).sqrt()  # sqrt(cls * ctr)
        if cfg['score_mode'] == 'code':
            # the code ranks by sqrt(c * mbar) and weighs by
            # sqrt(sqrt(c) * mbar), both before assignment and box-free
            weights = mask_aware_score(
                prob, confidence, mask_thr=cfg['mask_thr'], mode='code')
            order = (weights.square() * confidence.sqrt()).sqrt()
        else:
            order = confidence
        assigned = assign_pseudo_masks(result.bboxes, order, gt_boxes,
                                       cfg['iou_thr'], cfg['score_thr'])
        matched = assigned >= 0
        preds = assigned[matched]
        if cfg['score_mode'] == 'code':
            return assigned, weights[preds]
        return assigned, mask_aware_score(
            prob[preds],
            confidence[preds],
            box_masks[matched],
            mask_thr=cfg['mask_thr'],
            mode='paper')
