# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional, Tuple

import torch
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList
from torch import Tensor

from mmboxseg.registry import MODELS
from .ema_teacher_boxinst import EMATeacherBoxInst


def flatten_levels(maps: List[Tensor]) -> Tensor:
    """Per-level ``[B, C, H_l, W_l]`` maps to ``[B, sum_l H_l W_l, C]``, in
    the order of mmdet's ``pos_inds`` (``CondInstBboxHead``)."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


@MODELS.register_module()
class SIM(EMATeacherBoxInst):
    """SIM (Li et al., "Semantic-aware Instance Mask Generation for
    Box-Supervised Instance Segmentation", CVPR 2023) over CondInst/BoxInst.

    The detector is the segmentation network ``F_seg``; ``self.teacher`` is
    its momentum encoder ``F'_seg`` (a frozen BoxInst copy, momentum 0.9999
    through :class:`mmboxseg.engine.hooks.EMATeacherHook`). One training
    step on the (possibly copy-pasted) batch:

    1. the student computes FCOS losses and its positive proposals;
    2. the momentum encoder runs on the same images (eval mode, no
       gradient): its dynamic-conv parameters and boxes at the student's
       positive locations and its mask features are attached to the
       positive infos (:meth:`attach_momentum_outputs`);
    3. :class:`SIMMaskHead` computes BoxInst's losses, the self-corrected
       pseudo masks, updates the prototypes and adds the pseudo-mask and
       paste losses;
    4. images with pseudo masks are pushed, with their boxes, labels and
       mask scores, into the memory bank that
       :class:`mmboxseg.engine.hooks.MemoryBankHook` bound to
       :attr:`memory_bank` (if any), the source of the next batches'
       copy-paste (:class:`WeakCopyPaste` in
       :class:`CopyPasteBoxSupDataPreprocessor`).

    After each training step :attr:`last_pseudo_masks` holds the head's
    pseudo masks per image, for
    :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook`.

    As in the public code (``condinst.py``, ``proposal_generator_ema(
    images_norm, features, ...)``), the momentum encoder's FCOS head and
    controller run on the *student's* FPN features by default
    (``momentum_head_input='student'``); only its mask branch sees the
    momentum encoder's own backbone and FPN. ``'teacher'`` runs the whole
    momentum encoder on its own features. Images are pushed only once the
    pseudo losses are on, like the code.

    Args:
        inference_with (str): ``'student'`` (default: the paper evaluates
            ``F_seg``) or ``'teacher'``.
        momentum_head_input (str): ``'student'`` or ``'teacher'``: the FPN
            features the momentum encoder's FCOS head runs on.
        Other args: as mmdet's ``BoxInst``.
    """

    def __init__(self,
                 *args,
                 inference_with: str = 'student',
                 momentum_head_input: str = 'student',
                 **kwargs):
        if momentum_head_input not in ('student', 'teacher'):
            raise ValueError("SIM: momentum_head_input must be 'student' or "
                             f"'teacher', got {momentum_head_input!r}")
        super().__init__(*args, inference_with=inference_with, **kwargs)
        self.momentum_head_input = momentum_head_input
        heads = (self.bbox_head.num_classes,
                 getattr(self.mask_head, 'num_classes', None))
        if heads[0] != heads[1]:
            raise ValueError(
                f'SIM: bbox_head.num_classes={heads[0]} but '
                f'mask_head.num_classes={heads[1]} (the prototypes are per '
                'class); set both to the data set\'s number of classes')
        # set by MemoryBankHook; None trains without a bank
        self.memory_bank = None

    @property
    def last_pseudo_masks(self) -> List[dict]:
        """The last training step's pseudo masks, one record per image
        (see :class:`SIMMaskHead`)."""
        return self.mask_head.last_pseudo_masks

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        self.check_teacher_initialised()
        if self.memory_bank is not None and batch_data_samples and \
                'raw_image' not in batch_data_samples[0]:
            raise KeyError(
                'SIM: a memory bank is bound but the data samples lack '
                "`raw_image`; use data_preprocessor=dict(type='CopyPaste"
                "BoxSupDataPreprocessor', ...)")
        x = self.extract_feat(batch_inputs)
        losses = self.bbox_head.loss(x, batch_data_samples)
        positive_infos = self.bbox_head.get_positive_infos()
        self.attach_momentum_outputs(batch_inputs, positive_infos, x)
        mask_losses = self.mask_head.loss(
            x, batch_data_samples, positive_infos=positive_infos)
        losses.update(mask_losses)
        if self.memory_bank is not None and self.mask_head.pseudo_active():
            self.push_to_memory_bank(batch_data_samples)
        return losses

    @torch.no_grad()
    def attach_momentum_outputs(
            self,
            inputs: Tensor,
            positive_infos: InstanceList,
            student_feats: Optional[Tuple[Tensor]] = None) -> None:
        """Add ``teacher_param_preds`` ``[n, P]`` and ``teacher_bboxes``
        ``[n, 4]`` (decoded at the positive's point) to each image's
        positive infos, and its ``[D, H/8, W/8]`` mask features as metainfo
        ``teacher_mask_feats``. The FCOS head runs on ``student_feats``
        (the student's FPN outputs) with ``momentum_head_input='student'``
        when they are given, else on the momentum encoder's own."""
        teacher = self.teacher
        feats = teacher.extract_feat(inputs)
        head_feats = feats
        if self.momentum_head_input == 'student' and \
                student_feats is not None:
            head_feats = tuple(f.detach() for f in student_feats)
        _, bbox_preds, _, param_preds = teacher.bbox_head(head_feats)
        params = flatten_levels(param_preds)
        # eval-mode FCOS distances are already scaled by the stride
        dists = flatten_levels(bbox_preds)
        mask_feats = teacher.mask_head.mask_feature_head(feats)
        for i, info in enumerate(positive_infos):
            pos = info.pos_inds
            points = info.points
            dist = dists[i][pos]
            info.teacher_param_preds = params[i][pos]
            info.teacher_bboxes = torch.cat(
                [points - dist[:, :2], points + dist[:, 2:]], dim=1)
            info.set_metainfo(dict(teacher_mask_feats=mask_feats[i]))

    @torch.no_grad()
    def push_to_memory_bank(self, data_samples: SampleList) -> None:
        """Push each image that has pseudo masks (written by the head) with
        its valid instances into the bank."""
        for sample in data_samples:
            gt = sample.gt_instances
            if 'sim_valid' not in gt or not gt.sim_valid.any():
                continue
            keep = gt.sim_valid
            self.memory_bank.push(
                image=sample.raw_image,
                bboxes=get_box_tensor(gt.bboxes)[keep],
                labels=gt.labels[keep],
                mask_probs=gt.sim_prob[keep],
                scores=gt.sim_scores[keep])
