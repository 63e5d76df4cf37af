# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.ops import roi_align
from mmdet.models.detectors import SOLOv2
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.dist import all_reduce, get_world_size
from torch import Tensor

from mmboxseg.models.utils import (cost_volume, relu_l2_normalise,
                                   solve_correspondence)
from mmboxseg.registry import MODELS
from .ema_teacher_mixin import EMATeacherMixin

GATE_MODES = ('running_loss', 'iteration')
GATE_DEFAULTS = dict(
    mode='running_loss',
    ts_thresh=0.3,
    corr_thresh=0.2,
    running_momentum=0.9,
    running_init=2.0,
    ts_start_iter=0,
    corr_start_iter=0,
    teacher_start_iter=13002)
PAIR_KEYS = ('src_keypoints', 'trg_keypoints', 'src_bbox', 'trg_bbox',
             'pair_width')


@MODELS.register_module()
class DiscoBox(EMATeacherMixin, SOLOv2):
    """DiscoBox on SOLOv2 (Lan et al., ICCV 2021): a box-supervised SOLOv2
    student, an EMA teacher and explicit loss gates.

    **Teacher** (Sec. 3.5): a SOLOv2 of the same architecture held as
    buffers (:class:`EMATeacherMixin`), updated by
    :class:`~mmboxseg.engine.hooks.EMATeacherHook` (momentum 0.999) and
    saved in checkpoints (the release keeps it outside the module tree, so
    it is neither saved nor restored). Before ``teacher_start_iter`` (13002:
    the release copies the student once its counter passes 13000, in
    0-based step 13001, and uses the teacher from step 13002,
    ``single_stage_wsis.py``) the release uses the student's own
    (detached) predictions as the teacher's; so does this class, which
    also skips the teacher's forward pass then. Set the hook's
    ``start_iter`` to the same value (the configs share one variable).

    **Gates.** Two ``mode`` s, decided before each step and logged as
    ``gate_ts``, ``gate_corr`` and ``gate_teacher`` with
    ``mil_running_avg``:

    - ``'running_loss'`` (release): ``avg <- m avg + (1 - m) L_mil``
      after every step (``m`` 0.9, from 2.0); the self-consistency loss
      is on while ``avg < ts_thresh`` (0.3), the correspondence losses
      while ``avg < corr_thresh`` (0.2). The release keeps ``avg`` per
      process; here it is averaged over ranks so that all ranks open a
      gate at the same step.
    - ``'iteration'``: on from ``ts_start_iter`` / ``corr_start_iter``.

    ``avg`` and the step count are buffers, so ``--resume`` restores the
    gates.

    **Pseudo masks.** :attr:`last_pseudo_masks` holds, after each training
    step with the self-consistency gate open, the per-instance majority
    vote of the mean-field labels (stride-4 grid of the padded input, as
    the box masks) for
    :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook`; with the gate
    closed it is empty. ``gt_instances.eval_masks`` is only passed through.

    **Ablations.** ``with_mean_field=False`` drops both self-consistency
    terms; ``with_correspondence=False`` drops the correspondence branch
    (no memory bank needed).

    Inference runs the student by default (``inference_with``), as the
    release evaluates. Data samples carrying a correspondence pair
    (``src_keypoints`` etc., see
    :class:`~mmboxseg.datasets.transforms.LoadCorrespondencePair`) get
    keypoint transfer (:meth:`predict_correspondence`) instead.

    Args:
        gates (dict): See above.
        with_mean_field (bool): Self-consistency losses. Defaults to True.
        with_correspondence (bool): Correspondence losses. Defaults to True.
        correspondence_test_cfg (dict): ``grid`` (RoI grid side at test,
            16), ``method`` (``'message_passing'``), ``num_iters`` (10),
            ``window`` (None: the whole RoI).
        inference_with (str): ``'student'`` or ``'teacher'``.
        Other args: as mmdet's ``SOLOv2``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 mask_head: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 gates: Optional[dict] = None,
                 with_mean_field: bool = True,
                 with_correspondence: bool = True,
                 correspondence_test_cfg: Optional[dict] = None,
                 inference_with: str = 'student') -> None:
        teacher = self.teacher_like(
            SOLOv2,
            backbone=backbone,
            neck=neck,
            mask_head=mask_head,
            test_cfg=test_cfg)
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            mask_head=mask_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.setup_teacher(teacher, inference_with)
        gates = dict(gates or {})
        unknown = set(gates) - set(GATE_DEFAULTS)
        if unknown:
            raise KeyError(f'DiscoBox: unknown gates keys {sorted(unknown)};'
                           f' allowed: {sorted(GATE_DEFAULTS)}')
        self.gate_cfg = {**GATE_DEFAULTS, **gates}
        if self.gate_cfg['mode'] not in GATE_MODES:
            raise ValueError(f'DiscoBox: gates.mode must be one of '
                             f"{GATE_MODES}, got {self.gate_cfg['mode']!r}")
        self.with_mean_field = with_mean_field
        self.with_correspondence = with_correspondence
        self.corr_test_cfg = dict(
            grid=16, method='message_passing', num_iters=10, window=None)
        self.corr_test_cfg.update(correspondence_test_cfg or {})
        self.register_buffer('train_iters', torch.zeros((), dtype=torch.long))
        self.register_buffer(
            'running_mil_loss',
            torch.tensor(float(self.gate_cfg['running_init'])))
        self._hooks_checked = False

    # the memory bank lives in the head; MemoryBankHook binds it here
    @property
    def memory_bank(self):
        return self.mask_head.memory_bank

    @memory_bank.setter
    def memory_bank(self, bank) -> None:
        self.mask_head.memory_bank = bank

    @property
    def last_pseudo_masks(self) -> list:
        """The last training step's pseudo masks, one record per image
        (see :meth:`DiscoBoxSOLOv2Head.pseudo_mask_records
        <mmboxseg.models.dense_heads.DiscoBoxSOLOv2Head.pseudo_mask_records>`
        and :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook`); empty
        when the self-consistency gate was closed."""
        return self.mask_head.last_pseudo_masks

    @property
    def min_bank_size(self) -> int:
        return self.mask_head.corr_cfg['min_retrieval']

    # -- gates ---------------------------------------------------------------
    def current_gates(self) -> dict:
        """``ts``, ``corr`` and ``teacher`` gates of the coming step."""
        cfg, step = self.gate_cfg, int(self.train_iters)
        if cfg['mode'] == 'running_loss':
            avg = float(self.running_mil_loss)
            ts, corr = avg < cfg['ts_thresh'], avg < cfg['corr_thresh']
        else:
            ts = step >= cfg['ts_start_iter']
            corr = step >= cfg['corr_start_iter']
        return dict(
            ts=ts and self.with_mean_field,
            corr=corr and self.with_correspondence,
            teacher=step >= cfg['teacher_start_iter'])

    @torch.no_grad()
    def _update_running_loss(self, loss_mil: Tensor, num_pos: Tensor) -> None:
        """``avg <- m avg + (1 - m) L_mil``; a step without positive cells
        (on any rank) leaves ``avg`` alone rather than pulling it to 0."""
        stats = torch.stack([loss_mil.detach() * num_pos, num_pos.float()])
        if get_world_size() > 1:
            all_reduce(stats, op='sum')
        if stats[1] > 0:
            m = self.gate_cfg['running_momentum']
            self.running_mil_loss.mul_(m).add_((1 - m) * stats[0] / stats[1])
        self.train_iters += 1

    def _check_hooks(self) -> None:
        """Fail at the first step, not when a gate opens thousands of
        iterations later, when a hook the configured terms need is
        missing."""
        self.check_teacher_initialised()
        if self.with_correspondence and self.memory_bank is None:
            raise RuntimeError(
                'DiscoBox: with_correspondence=True but no memory bank is '
                "bound; add dict(type='MemoryBankHook', bank=dict(type="
                "'ObjectMemoryBank', num_classes=...)) to custom_hooks, or "
                'set model.with_correspondence=False')

    # -- training ------------------------------------------------------------
    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        """Student losses with the gated teacher terms.

        Needs ``gt_instances.box_masks`` (stride 4) and ``image_valid``
        from :class:`BoxSupDataPreprocessor`; reads no mask.
        """
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(
            batch_data_samples)
        for gt in batch_gt_instances:
            if 'box_masks' not in gt:
                raise KeyError(
                    'DiscoBox: gt_instances has no box_masks; use '
                    "data_preprocessor=dict(type='BoxSupDataPreprocessor', "
                    'mask_stride=4)')
        if not self._hooks_checked and (self.with_mean_field
                                        or self.with_correspondence):
            self._check_hooks()
            self._hooks_checked = True
        gates = self.current_gates()
        x = self.extract_feat(batch_inputs)
        kernels, cls_preds, mask_feats = self.mask_head(x)
        teacher = images = valid = None
        if gates['ts'] or gates['corr']:
            if gates['teacher']:
                self.check_teacher_initialised()
                with torch.no_grad():
                    tx = self.teacher.extract_feat(batch_inputs)
                    t_kernels, _, t_mask_feats = self.teacher.mask_head(tx)
                teacher = dict(
                    kernels=t_kernels, mask_feats=t_mask_feats, feats=tx[0])
            else:
                teacher = dict(
                    kernels=[k.detach() for k in kernels],
                    mask_feats=mask_feats.detach(),
                    feats=x[0].detach())
            # as the release: bilinear with align_corners=True (the box
            # masks sample 4i+2, so colours drift by up to 2 input pixels
            # towards the image border)
            images = F.interpolate(
                batch_inputs,
                mask_feats.shape[-2:],
                mode='bilinear',
                align_corners=True)
            if all('image_valid' in s for s in batch_data_samples):
                valid = torch.stack(
                    [s.image_valid for s in batch_data_samples])
        losses = self.mask_head.loss_by_feat(
            kernels,
            cls_preds,
            mask_feats,
            batch_gt_instances,
            batch_img_metas,
            teacher=teacher,
            images=images,
            image_valid=valid,
            student_feats=x[0],
            gates=dict(gates, ts_corr=self.with_mean_field))
        self._update_running_loss(losses['loss_mask'], losses['mil_positives'])
        device = batch_inputs.device
        for name in ('ts', 'corr', 'teacher'):
            losses[f'gate_{name}'] = torch.tensor(
                float(gates[name]), device=device)
        # no 'loss' in the name: logged, not summed into the loss
        losses['mil_running_avg'] = self.running_mil_loss.clone()
        return losses

    # -- correspondence ------------------------------------------------------
    def _inference_net(self):
        return self.teacher if self.inference_with == 'teacher' else self

    @torch.no_grad()
    def match_rois(self,
                   feats: Tensor,
                   boxes: Tensor,
                   stride: float,
                   grid: Optional[int] = None) -> Tuple[Tensor, int]:
        """Dense correspondence of object ``boxes[0]`` in image 0 to
        ``boxes[1]`` in image 1.

        Args:
            feats (Tensor): ``[2, C, H', W']`` finest FPN level of the two
                images (stride ``s``).
            boxes (Tensor): ``[2, 4]`` boxes in input pixels.
            stride (float): Stride of ``feats``.
            grid (int, optional): RoI grid side ``g``.

        Returns:
            tuple: ``scores [g*g, g*g]`` (row ``i``: the source cell's
            match scores over the target cells) and ``g``.
        """
        cfg = self.corr_test_cfg
        grid = grid or cfg['grid']
        rois = torch.cat([
            torch.arange(2, device=boxes.device)[:, None].to(boxes.dtype),
            boxes
        ], 1)
        roi_feats = relu_l2_normalise(
            roi_align(feats, rois, (grid, grid), 1.0 / stride, 0, 'avg', True))
        cost = cost_volume(roi_feats[0], roi_feats[1:])
        window = cfg['window'] or 2 * grid - 1
        scores = solve_correspondence(
            cost, (grid, grid),
            method='message_passing'
            if cfg['method'] == 'message_passing' else 'sinkhorn',
            num_iters=cfg['num_iters'],
            window=window,
            query_mask=torch.ones(grid, grid, device=cost.device),
            key_masks=torch.ones(1, grid, grid, device=cost.device))
        return scores[0], grid

    @staticmethod
    def transfer_keypoints(scores: Tensor, grid: int, src_box: Tensor,
                           trg_box: Tensor, keypoints: Tensor) -> Tensor:
        """Move ``keypoints [N, 2]`` (x, y) from the source box to the
        target box: nearest source cell, best-scoring target cell, its
        centre."""
        if len(keypoints) == 0:
            return keypoints.new_zeros(0, 2)
        src_wh = (src_box[2:] - src_box[:2]).clamp_min(1e-6)
        cell = ((keypoints - src_box[:2]) / src_wh * grid).floor().long()
        cell = cell.clamp(0, grid - 1)
        match = scores[cell[:, 1] * grid + cell[:, 0]].argmax(dim=1)
        centre = torch.stack([match % grid, match // grid], 1).float() + 0.5
        trg_wh = trg_box[2:] - trg_box[:2]
        return trg_box[:2] + centre / grid * trg_wh

    @torch.no_grad()
    def predict_correspondence(self, batch_inputs: Tensor,
                               batch_data_samples: SampleList) -> SampleList:
        """Keypoint transfer for image pairs packed side by side (source
        left, target right, each ``pair_width`` wide): each half runs
        through the network on its own; ``pred_keypoints [N, 2]`` are in
        the target half's pixels."""
        net = self._inference_net()
        for inputs, sample in zip(batch_inputs, batch_data_samples):
            meta = sample.metainfo
            width = int(meta['pair_width'])
            height = int(meta['img_shape'][0])
            pair = torch.stack([
                inputs[:, :height, :width], inputs[:, :height, width:2 * width]
            ])
            # each half padded to a multiple of 32, so that the finest
            # level's stride is exact
            pad_h, pad_w = -height % 32, -width % 32
            pair = F.pad(pair, (0, pad_w, 0, pad_h))
            feats = net.extract_feat(pair)[0]
            boxes = torch.as_tensor(
                np.stack([meta['src_bbox'], meta['trg_bbox']]),
                dtype=torch.float32,
                device=inputs.device)
            scores, grid = self.match_rois(feats, boxes,
                                           pair.shape[-1] / feats.shape[-1])
            kps = torch.as_tensor(
                meta['src_keypoints'],
                dtype=torch.float32,
                device=inputs.device).view(-1, 2)
            sample.pred_keypoints = self.transfer_keypoints(
                scores, grid, boxes[0], boxes[1], kps)
        return batch_data_samples

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        if batch_data_samples and all(k in batch_data_samples[0].metainfo
                                      for k in PAIR_KEYS):
            return self.predict_correspondence(batch_inputs,
                                               batch_data_samples)
        return super().predict(batch_inputs, batch_data_samples, rescale)
