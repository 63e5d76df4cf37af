# Copyright (c) mmboxseg contributors. All rights reserved.
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.structures import DetDataSample, SampleList
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet.utils import OptConfigType
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmboxseg.models.utils import assign_pseudo_masks
from mmboxseg.models.utils.pseudo_mask_assignment import (
    SCORE_MODES, release_mask_scores, resize_to_teacher_scale,
    teacher_mask_statistics)
from mmboxseg.registry import MODELS
from .ema_teacher_boxinst import EMATeacherBoxInst

TEACHER_MODES = ('train', 'eval')


@MODELS.register_module()
class BoxTeacher(EMATeacherBoxInst):
    """BoxTeacher (Cheng et al., CVPR 2023) over CondInst/BoxInst.

    The detector itself is the student; ``self.teacher`` is a BoxInst with
    the same architecture whose tensors are buffers
    (:func:`freeze_as_buffers`), updated only by
    :class:`mmboxseg.engine.hooks.EMATeacherHook` (momentum 0.999). It is in
    every checkpoint and restored on ``--resume``; the optimizer never sees
    it.

    One training step, as the public code (``boxteacher.py`` ``forward``,
    ``condinst.py`` ``forward_teacher`` / ``postprocess``):

    1. the teacher (no gradients; ``teacher_mode='train'``: BN layers use
       the batch statistics, the code's ``TEACHER_EVAL=False``) sees the
       teacher view (un-augmented colours, the student's flip and scale)
       resized to the test scale ``teacher_scale`` (``resize_images``:
       short side 800, long side at most 1333 on COCO) and predicts boxes,
       scores and stride-4 mask probabilities;
    2. boxes are scaled back to the student image, masks up-sampled to it
       and sampled on the student's stride-4 grid
       (:func:`teacher_mask_statistics`);
    3. Alg. 1 assigns predictions to ground-truth boxes
       (:func:`assign_pseudo_masks`, IoU >= ``iou_thr``, score >=
       ``score_thr``) in descending ranking score; pseudo masks are the
       teacher masks thresholded at ``mask_thr`` and clipped to the
       ground-truth box mask;
    4. each assigned mask gets the mask-aware score (``score_mode``, see
       below) as its loss weight;
    5. the student sees the student view and is trained with the BoxInst
       losses plus the noise-aware pseudo-mask loss
       (:class:`BoxTeacherMaskHead`).

    ``score_mode`` (``c = sqrt(cls * ctr)``, AdelaiDet's FCOS score; mmdet's
    scores are ``cls * ctr``; ``mbar`` the mean probability of the mask's
    pixels above ``mask_thr`` at the student's resolution):

    - ``'code'`` (default, the public code): Alg. 1 ranks by
      ``sqrt(c * mbar)`` and the loss weight is ``c^(1/4) mbar^(1/2)``,
      both box-free and computed before the assignment
      (:func:`release_mask_scores`);
    - ``'paper'``: Eq. 1, ``sqrt(c * mbar_box)`` with ``mbar`` restricted to
      the assigned ground-truth box, as the weight; Alg. 1 ranks by ``c``.

    Differences from the public code, on purpose:

    - the ``gtm[j] > 0`` test of ``pseudo_labeling`` (a ground truth
      matched to prediction 0 can be matched again) is fixed, see
      :func:`assign_pseudo_masks`;
    - mmdet's FCOS head multiplies box predictions by the stride only when
      it is not training, so with ``teacher_mode='train'`` the teacher's
      ``bbox_head`` runs in eval mode (its BN layers, if any, in train
      mode; the configs' heads use GN, which has no mode);
    - teacher detections whose IoU with every ground-truth box is below
      ``iou_thr`` are dropped before the mask head: Alg. 1 can never
      assign them, so the result is unchanged and the teacher's mask work
      smaller.

    Args:
        pseudo_cfg (dict): ``iou_thr`` (0.5), ``score_thr`` (0.0),
            ``mask_thr`` (0.5, the code's ``TEACHER_MASK_THRESHOLD``),
            ``score_mode`` (``'code'``).
        teacher_scale (tuple[int, int], optional): ``(long, short)`` test
            scale of the teacher's input, e.g. ``(1333, 800)`` (the code's
            ``(INPUT.MAX_SIZE_TEST, INPUT.MIN_SIZE_TEST)``). None runs the
            teacher on the student's geometry.
        teacher_mode (str): ``'train'`` (the code: BN with batch statistics;
            the teacher's running statistics are then its own, from its
            own forward passes, as the code's EMA skips buffers) or
            ``'eval'`` (running statistics).
        teacher_chunk (int): Teacher masks mapped to the student image at a
            time (memory bound, no effect on the result).
        inference_with (str): ``'teacher'`` (default, the code's
            ``USE_TEACHER_INFERENCE``) or ``'student'``.
        Other args: as mmdet's ``BoxInst``.
    """

    def __init__(self,
                 *args,
                 pseudo_cfg: OptConfigType = None,
                 teacher_scale: Optional[Sequence[int]] = (1333, 800),
                 teacher_mode: str = 'train',
                 teacher_chunk: int = 16,
                 inference_with: str = 'teacher',
                 **kwargs) -> None:
        super().__init__(*args, inference_with=inference_with, **kwargs)
        pseudo = dict(
            iou_thr=0.5, score_thr=0.0, mask_thr=0.5, score_mode='code')
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
        if teacher_mode not in TEACHER_MODES:
            raise ValueError(f'BoxTeacher: teacher_mode must be one of '
                             f'{TEACHER_MODES}, got {teacher_mode!r}')
        if teacher_scale is not None:
            teacher_scale = tuple(int(v) for v in teacher_scale)
            if len(teacher_scale) != 2 or min(teacher_scale) <= 0:
                raise ValueError('BoxTeacher: teacher_scale must be '
                                 f'(long, short), got {teacher_scale}')
        self.pseudo_cfg = pseudo
        self.teacher_scale = teacher_scale
        self.teacher_mode = teacher_mode
        self.teacher_chunk = max(int(teacher_chunk), 1)

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

    @contextmanager
    def teacher_forward_mode(self):
        """The teacher's mode during its training-time forward; eval mode
        afterwards (inference and checkpoints see an eval teacher)."""
        if self.teacher_mode == 'train':
            self.teacher.train()
            # mmdet's FCOS decodes boxes (x stride) only in eval mode
            self.teacher.bbox_head.eval()
            for module in self.teacher.bbox_head.modules():
                if isinstance(module, _BatchNorm):
                    module.train()
        else:
            self.teacher.eval()
        try:
            yield
        finally:
            self.teacher.eval()

    def teacher_inputs(
            self, inputs: Tensor, data_samples: SampleList
    ) -> Tuple[Tensor, SampleList, List[tuple]]:
        """The teacher's batch: ``inputs`` resized to ``teacher_scale``
        (:func:`resize_to_teacher_scale`) with matching metainfo, and the
        ``(h, w)`` of each teacher image; unchanged when ``teacher_scale``
        is None."""
        shapes = [tuple(s.metainfo['img_shape'][:2]) for s in data_samples]
        if self.teacher_scale is None:
            return inputs, data_samples, shapes
        divisor = getattr(self.data_preprocessor, 'pad_size_divisor', 32)
        batch, sizes = resize_to_teacher_scale(inputs, shapes,
                                               self.teacher_scale, divisor)
        samples = []
        for sample, (h, w), size in zip(data_samples, shapes, sizes):
            meta = dict(
                sample.metainfo,
                img_shape=size,
                pad_shape=tuple(batch.shape[-2:]),
                batch_input_shape=tuple(batch.shape[-2:]),
                scale_factor=(size[1] / w, size[0] / h))
            samples.append(DetDataSample(metainfo=meta))
        return batch, samples, sizes

    @torch.no_grad()
    def teacher_predictions(self, inputs: Tensor, data_samples: SampleList,
                            grid_size: Tuple[int, int]) -> List[InstanceData]:
        """Teacher detections mapped to the student images.

        Args:
            inputs (Tensor): ``[B, 3, H, W]`` teacher view (student
                geometry).
            data_samples (list): Its samples (``gt_instances.bboxes``).
            grid_size (tuple): ``(H/4, W/4)`` of the student's padded batch.

        Returns:
            list[InstanceData]: Per image, for the ``n`` detections that
            overlap a ground-truth box by ``iou_thr`` or more: ``bboxes``
            ``[n, 4]`` and ``scores`` ``[n]`` (mmdet's ``cls * ctr``) in
            the student image, ``grid_probs`` ``[n, H/4, W/4]`` (mask
            probabilities on the student's grid), ``mean_probs`` ``[n]``
            (``mbar``, box-free) and, with ``score_mode='paper'``,
            ``box_mean_probs`` ``[n, G]`` (``mbar`` inside each box).
        """
        cfg = self.pseudo_cfg
        stride = self.mask_head.mask_out_stride
        t_inputs, t_samples, t_sizes = self.teacher_inputs(
            inputs, data_samples)
        with self.teacher_forward_mode():
            feats = self.teacher.extract_feat(t_inputs)
            results = self.teacher.bbox_head.predict(
                feats, t_samples, rescale=False)
            kept = []
            for result, sample, t_size in zip(results, data_samples, t_sizes):
                h, w = sample.metainfo['img_shape'][:2]
                gt_boxes = get_box_tensor(sample.gt_instances.bboxes)
                # teacher image -> student image (postprocess: scale, clip,
                # drop empty boxes)
                bboxes = result.bboxes * result.bboxes.new_tensor(
                    [w / t_size[1], h / t_size[0]] * 2)
                bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, w)
                bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, h)
                keep = (bboxes[:, 2] > bboxes[:, 0]) & (
                    bboxes[:, 3] > bboxes[:, 1])
                if len(gt_boxes) == 0:
                    keep = keep & False
                elif len(result):
                    ious = bbox_overlaps(bboxes, gt_boxes.to(bboxes))
                    keep = keep & (ious.max(dim=1)[0] >= cfg['iou_thr'])
                result = result[keep]
                result.bboxes_student = bboxes[keep]
                kept.append(result)
            mask_logits = self.teacher.mask_head(feats, kept)[0]
        outputs = []
        for logits, result, sample, t_size in zip(mask_logits, kept,
                                                  data_samples, t_sizes):
            h, w = sample.metainfo['img_shape'][:2]
            gt_boxes = get_box_tensor(sample.gt_instances.bboxes)
            grid, mean, box_mean = teacher_mask_statistics(
                logits.sigmoid(),
                t_size, (h, w),
                grid_size,
                stride=stride,
                mask_thr=cfg['mask_thr'],
                gt_boxes=gt_boxes.to(logits)
                if cfg['score_mode'] == 'paper' else None,
                chunk=self.teacher_chunk)
            out = InstanceData(
                bboxes=result.bboxes_student,
                scores=result.scores,
                grid_probs=grid,
                mean_probs=mean)
            if box_mean is not None:
                out.box_mean_probs = box_mean
            outputs.append(out)
        return outputs

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
        grid_size = tuple(s_samples[0].gt_instances.box_masks.shape[-2:])
        teacher = self.teacher_predictions(t_inputs, t_samples, grid_size)
        # what PseudoMaskQualityHook scores after the step; the evaluation
        # masks ride along untouched, no loss reads them
        self.last_pseudo_masks = []
        num_gts = num_assigned = 0
        score_sum = t_inputs.new_zeros(())
        for result, sample in zip(teacher, s_samples):
            gt = sample.gt_instances
            box_masks = gt.box_masks
            prob = result.grid_probs
            if prob.shape[-2:] != box_masks.shape[-2:]:
                raise ValueError(
                    f'teacher masks {tuple(prob.shape[-2:])} and box masks '
                    f'{tuple(box_masks.shape[-2:])} differ in size')
            gt_boxes = get_box_tensor(gt.bboxes)
            pseudo = torch.zeros_like(box_masks)
            scores = prob.new_zeros(len(gt))
            matched = torch.zeros_like(scores, dtype=torch.bool)
            if len(result) and len(gt):
                assigned, scored = self.assign_and_score(result, gt_boxes)
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

    def assign_and_score(self, result: InstanceData,
                         gt_boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Alg. 1 and the mask-aware score for one image.

        Args:
            result (InstanceData): Teacher ``bboxes`` ``[N, 4]``,
                ``scores`` ``[N]`` (mmdet's ``cls * ctr``), ``mean_probs``
                ``[N]`` and, for ``score_mode='paper'``,
                ``box_mean_probs`` ``[N, G]`` (see
                :meth:`teacher_predictions`).
            gt_boxes (Tensor): ``[G, 4]``.

        Returns:
            tuple[Tensor, Tensor]: ``[G]`` assigned prediction or -1, and
            the ``[M]`` scores (loss weights) of the ``M`` assigned ground
            truths.
        """
        cfg = self.pseudo_cfg
        confidence = result.scores.clamp(min=0).sqrt()  # sqrt(cls * ctr)
        if cfg['score_mode'] == 'code':
            weights, order = release_mask_scores(confidence, result.mean_probs)
        else:
            order = confidence
        assigned = assign_pseudo_masks(result.bboxes, order, gt_boxes,
                                       cfg['iou_thr'], cfg['score_thr'])
        matched = assigned >= 0
        preds = assigned[matched]
        if cfg['score_mode'] == 'code':
            return assigned, weights[preds]
        gt_index = matched.nonzero()[:, 0]
        box_mean = result.box_mean_probs[preds, gt_index]
        return assigned, (confidence[preds] * box_mean).clamp(min=0).sqrt()
