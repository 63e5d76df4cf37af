# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.ops import roi_align
from mmdet.models.dense_heads import SOLOV2Head
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList
from mmengine.structures import InstanceData
from torch import Tensor

from mmboxseg.models.losses import projection_dice
from mmboxseg.models.utils import (contrast_sensitive_kernel, cost_volume,
                                   masks_to_boxes, mean_field,
                                   relu_l2_normalise, solve_correspondence,
                                   transfer_masks)
from mmboxseg.registry import MODELS

MEAN_FIELD_DEFAULTS = dict(
    kernel_size=3, num_iters=10, alpha0=2.0, theta0=0.5, theta1=30.0, base=0.1)
CORRESPONDENCE_DEFAULTS = dict(
    method='message_passing',
    num_iters=10,
    window=9,
    smooth_size=3,
    eps=0.05,
    gamma=1.0,
    feat_size=7,
    mask_size=28,
    min_retrieval=5,
    cross_weight=0.01,
    ts_weight=0.01,
    solve_on='student',
    bank_push='interleaved')
SOLVE_ON = ('student', 'teacher')
BANK_PUSH = ('interleaved', 'after_losses')


def _merge(defaults: dict, given: Optional[dict], what: str) -> dict:
    given = dict(given or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise KeyError(f'DiscoBoxSOLOv2Head: unknown {what} keys '
                       f'{sorted(unknown)}; allowed: {sorted(defaults)}')
    return {**defaults, **given}


@MODELS.register_module()
class DiscoBoxSOLOv2Head(SOLOV2Head):
    """SOLOv2 head trained from boxes with DiscoBox's losses (Lan et al.,
    ICCV 2021).

    - **Targets** (Sec. 3.1): SOLOv2's assignment with the box as the
      mask: centre cell of the centre of mass of the release's box mask
      (``(round(x1) + round(x2)) / 2``), plus the ``pos_scale`` region
      clipped to 3 x 3; mask targets are the stride-4 box masks of
      :class:`~mmboxseg.models.data_preprocessors.BoxSupDataPreprocessor`
      (the release rounds the box at full resolution and rescales). No
      ground-truth mask is read. Vectorised over instances; mmdet loops
      over instances and cells.
    - **MIL loss** ``L_mil`` (Sec. 3.1): dice of the row and column maxima
      (``loss_mask``, :class:`~mmboxseg.models.losses.BoxProjectionLoss`
      with the release's ``eps = 0.002``), averaged over positive cells.
      Category loss unchanged.
    - **Self-consistency** ``L_con`` (Sec. 3.4; ``loss_ts``): mean-field
      (:func:`~mmboxseg.models.utils.mean_field`) of ``(teacher +
      student) / 2`` inside the box gives the teacher's label ``x``;
      ``dice(s * maxpool3x3(box), x)`` per positive, averaged (release:
      dice, the paper writes a cross-entropy).
    - **Correspondence** (Secs. 3.2-3.3, 3.6; release ``corr_loss``): one
      query per instance at its best cell (release ``best_target_single``:
      the level whose ``sqrt(lo * hi)`` is nearest the box size ``sqrt(w
      h)`` in ratio, ``max(mid / size, size / mid)``, centre cell). RoIs
      are the extents of the stride-4 box masks; RoI features
      (``feat_size``, ReLU + L2) of the student's and teacher's finest FPN
      level and 28 x 28 RoI masks; partners retrieved from
      :attr:`memory_bank` with the student's RoI; with at least
      ``min_retrieval`` of them the correspondence is solved
      (:func:`~mmboxseg.models.utils.solve_correspondence`) on the
      student's detached cost volume (``solve_on='student'``, release; the
      paper's text: the teacher's), the dense contrastive loss ``L_nce``
      (``loss_corr``) is applied to the student's cost volume, and the
      partners' masks are transferred into a cross-image unary. Mean-field
      is rerun with it for every query (zero unary without partners); its
      label supervises the student's mask as ``loss_ts_corr``, averaged
      over all queries, with its gradient scaled by ``ts_weight`` (0.01,
      release). The teacher's RoIs go into the bank (see
      :meth:`correspondence_losses` for the order).

    Which of these run is decided by the detector's gates
    (:class:`~mmboxseg.models.detectors.DiscoBox`).

    **Pseudo masks** (:attr:`last_pseudo_masks`, for
    :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook`): in a step with
    the self-consistency gate open, the mean-field labels of ``L_con``
    (one per positive cell, on the mask features' grid, i.e. the
    ``mask_stride`` grid of the padded batch input whose cell ``(i, j)``
    is input pixel ``(s j + s // 2, s i + s // 2)``, as the box masks)
    are merged per instance by :meth:`pseudo_mask_records`. Otherwise the
    list is empty. No loss reads ``gt_instances.eval_masks``.

    Args:
        mean_field (dict): ``kernel_size`` 3, ``num_iters`` 10, ``alpha0``
            2, ``theta0`` 0.5, ``theta1`` 30, ``base`` 0.1 (release).
        ts_loss_weight (float): ``alpha_con``. Defaults to 1.0.
        correspondence (dict): ``method`` (``'message_passing'``, the
            release's, or ``'sinkhorn'``, the paper's), ``num_iters`` 10,
            ``window`` 9, ``smooth_size`` 3, ``eps`` 0.05, ``gamma`` 1,
            ``feat_size`` 7, ``mask_size`` 28, ``min_retrieval`` 5,
            ``cross_weight`` 0.01 (weight of the cross-image unary in
            mean-field), ``ts_weight`` 0.01 (gradient scale of
            ``loss_ts_corr``), ``solve_on`` (``'student'``, release, or
            ``'teacher'``), ``bank_push`` (``'interleaved'``, release, or
            ``'after_losses'``, paper). All release values
            (``configs/discobox/discobox_solov2_r50_fpn_3x.py``).
        loss_corr (dict): :class:`DenseContrastiveLoss` config.
        **kwargs: :class:`mmdet.models.dense_heads.SOLOV2Head` arguments;
            ``loss_mask`` is the MIL loss.
    """

    def __init__(self,
                 *args,
                 mean_field: Optional[dict] = None,
                 ts_loss_weight: float = 1.0,
                 correspondence: Optional[dict] = None,
                 loss_corr: dict = dict(
                     type='DenseContrastiveLoss', loss_weight=1.0),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.dynamic_conv_size != 1:
            raise ValueError('DiscoBoxSOLOv2Head supports dynamic_conv_size '
                             f'1 only, got {self.dynamic_conv_size}')
        self.mean_field_cfg = _merge(MEAN_FIELD_DEFAULTS, mean_field,
                                     'mean_field')
        self.corr_cfg = _merge(CORRESPONDENCE_DEFAULTS, correspondence,
                               'correspondence')
        for key, allowed in (('solve_on', SOLVE_ON), ('bank_push', BANK_PUSH)):
            if self.corr_cfg[key] not in allowed:
                raise ValueError(f'DiscoBoxSOLOv2Head: correspondence.{key} '
                                 f'must be one of {allowed}, got '
                                 f'{self.corr_cfg[key]!r}')
        self.ts_loss_weight = ts_loss_weight
        self.loss_corr = MODELS.build(loss_corr)
        # set by MemoryBankHook; per rank (see ObjectMemoryBank)
        self.memory_bank = None
        # set by every loss_by_feat (see pseudo_mask_records)
        self.last_pseudo_masks: List[dict] = []

    # -- targets ------------------------------------------------------------
    def box_targets_single(self, gt_instances: InstanceData,
                           featmap_size: Tuple[int, int]) -> dict:
        """SOLOv2 targets of one image from its boxes.

        Returns:
            dict: ``pos_gt [n]`` and ``pos_level [n]`` and ``pos_cell
            [n]`` of every positive cell (level-major, then instance, then
            row-major cell, as mmdet), ``labels``: per level ``[S*S]``
            (a cell claimed by several instances takes the last one, as
            mmdet), ``best_level [G]`` and ``best_cell [G]``, ``valid
            [G]`` (instances with a non-empty stride-4 box mask: the others
            are category positives, as in mmdet, but carry no mask loss or
            query, as the release drops all-zero targets).
        """
        boxes = get_box_tensor(gt_instances.bboxes)
        labels = gt_instances.labels
        device = labels.device
        h, w = featmap_size
        up_h, up_w = h * self.mask_stride, w * self.mask_stride
        valid = gt_instances.box_masks.flatten(1).any(dim=1)
        has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        # a trailing background entry: cells nobody claims (and images
        # without objects) index it
        labels_or_bg = torch.cat(
            [labels, labels.new_full((1, ), self.num_classes)])
        sizes = ((boxes[:, 2] - boxes[:, 0]) *
                 (boxes[:, 3] - boxes[:, 1])).clamp_min(0).sqrt()
        # the release's centre of mass of its box mask, filled over the
        # rounded pixel range round(x1)..round(x2) inclusive
        cx = (boxes[:, 0].round() + boxes[:, 2].round()) / 2
        cy = (boxes[:, 1].round() + boxes[:, 3].round()) / 2
        half_w = 0.5 * (boxes[:, 2] - boxes[:, 0]) * self.pos_scale
        half_h = 0.5 * (boxes[:, 3] - boxes[:, 1]) * self.pos_scale
        shifts = torch.tensor([-1, 0, 1], device=device)
        gt_index = torch.arange(len(boxes), device=device)
        pos_gt, pos_level, pos_cell, level_labels, centres = \
            [], [], [], [], []
        for level, ((lo, hi),
                    grid) in enumerate(zip(self.scale_ranges, self.num_grids)):

            def cell(v, extent):
                return torch.div(
                    v / extent, 1.0 / grid, rounding_mode='trunc').long()

            row, col = cell(cy, up_h), cell(cx, up_w)
            centres.append(
                row.clamp(0, grid - 1) * grid + col.clamp(0, grid - 1))
            top = torch.maximum(cell(cy - half_h, up_h).clamp_min(0), row - 1)
            down = torch.minimum(
                cell(cy + half_h, up_h).clamp_max(grid - 1), row + 1)
            left = torch.maximum(cell(cx - half_w, up_w).clamp_min(0), col - 1)
            right = torch.minimum(
                cell(cx + half_w, up_w).clamp_max(grid - 1), col + 1)
            rows = row[:, None, None] + shifts[None, :, None]
            cols = col[:, None, None] + shifts[None, None, :]
            hit = has_area & (sizes >= lo) & (sizes <= hi)
            ok = (
                hit[:, None, None] & (rows >= top[:, None, None]) &
                (rows <= down[:, None, None]) & (cols >= left[:, None, None]) &
                (cols <= right[:, None, None]))
            gt_of = gt_index[:, None, None].expand_as(ok)[ok]
            cells = (rows * grid + cols)[ok]
            pos_gt.append(gt_of)
            pos_level.append(torch.full_like(gt_of, level))
            pos_cell.append(cells)
            winner = torch.full((grid * grid, ), -1, device=device)
            winner.scatter_reduce_(0, cells, gt_of, reduce='amax')
            level_labels.append(labels_or_bg[torch.where(
                winner >= 0, winner, torch.full_like(winner, len(labels)))])
        # the release's best_target_single: the level whose sqrt(lo * hi)
        # is nearest in ratio, max(mid / size, size / mid), i.e. in log scale
        means = torch.tensor([(lo * hi)**0.5 for lo, hi in self.scale_ranges],
                             device=device)
        ratio = means[None] / (sizes[:, None] + 1e-6)
        best_level = torch.maximum(ratio, 1 / ratio).argmin(dim=1)
        best_cell = torch.stack(
            centres, dim=1).gather(
                1, best_level[:, None])[:, 0] if len(boxes) else best_level
        return dict(
            pos_gt=torch.cat(pos_gt),
            pos_level=torch.cat(pos_level),
            pos_cell=torch.cat(pos_cell),
            labels=level_labels,
            best_level=best_level,
            best_cell=best_cell,
            valid=valid)

    # -- dynamic convolution ------------------------------------------------
    @staticmethod
    def gather_kernels(mlvl_kernel_preds: List[Tensor], img_inds: Tensor,
                       levels: Tensor, cells: Tensor) -> Tensor:
        """``[n, E]`` kernels at ``(image, level, cell)`` triples."""
        out = mlvl_kernel_preds[0].new_zeros(
            len(img_inds), mlvl_kernel_preds[0].shape[1])
        for level, preds in enumerate(mlvl_kernel_preds):
            sel = levels == level
            if sel.any():
                out[sel] = preds.flatten(2)[img_inds[sel], :, cells[sel]]
        return out

    @staticmethod
    def dynamic_masks(kernels: Tensor, mask_feats: Tensor,
                      img_inds: Tensor) -> Tensor:
        """``[n, H, W]`` mask logits: 1x1 dynamic convolution of each
        kernel ``[n, E]`` with its image's ``mask_feats [B, E, H, W]``."""
        b, e, h, w = mask_feats.shape
        out = mask_feats.new_zeros(len(kernels), h, w)
        for img in img_inds.unique().tolist():
            sel = img_inds == img
            out[sel] = (kernels[sel] @ mask_feats[img].view(e, h * w)).view(
                -1, h, w)
        return out

    # -- losses -------------------------------------------------------------
    def loss_by_feat(self,
                     mlvl_kernel_preds: List[Tensor],
                     mlvl_cls_preds: List[Tensor],
                     mask_feats: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     teacher: Optional[dict] = None,
                     images: Optional[Tensor] = None,
                     image_valid: Optional[Tensor] = None,
                     student_feats: Optional[Tensor] = None,
                     gates: Optional[Dict[str, bool]] = None,
                     **kwargs) -> dict:
        """Losses of a batch.

        Args:
            mlvl_kernel_preds, mlvl_cls_preds, mask_feats: :meth:`forward`
                outputs of the student.
            batch_gt_instances (list[InstanceData]): ``bboxes``,
                ``labels`` and ``box_masks [G, H, W]`` (stride 4).
            batch_img_metas (list[dict]): Image metas.
            teacher (dict, optional): ``kernels`` (list like
                ``mlvl_kernel_preds``), ``mask_feats`` and ``feats`` (its
                finest FPN level), no gradient. Needed by the gated terms.
            images (Tensor, optional): ``[B, 3, H, W]`` normalised colours
                at the mask resolution (for mean-field).
            image_valid (Tensor, optional): ``[B, H, W]`` bool non-padding.
            student_feats (Tensor, optional): The student's finest FPN
                level ``[B, C, H', W']`` (correspondence).
            gates (dict): ``ts`` and ``corr`` booleans, and ``ts_corr``
                (the cross-image self-consistency term; default True).

        Returns:
            dict: ``loss_mask`` (MIL), ``loss_cls``, ``loss_ts``,
            ``loss_ts_corr``, ``loss_corr`` and the counts ``mil_positives``
            (cells with a mask loss) and ``corr_queries`` (queries with
            enough partners).
        """
        gates = {'ts': False, 'corr': False, 'ts_corr': True, **(gates or {})}
        self.last_pseudo_masks = []
        featmap_size = mask_feats.shape[-2:]
        targets = [
            self.box_targets_single(gt, featmap_size)
            for gt in batch_gt_instances
        ]
        img_inds = torch.cat(
            [torch.full_like(t['pos_gt'], i) for i, t in enumerate(targets)])
        pos_level = torch.cat([t['pos_level'] for t in targets])
        pos_cell = torch.cat([t['pos_cell'] for t in targets])
        # positives whose box covers a stride-4 sample carry mask losses
        with_mask = torch.cat([t['valid'][t['pos_gt']] for t in targets])
        # row r of the mask losses: instance pos_gt[r] of image img_inds[r]
        pos_gt = torch.cat([t['pos_gt'] for t in targets])[with_mask]
        img_inds, pos_level, pos_cell = (img_inds[with_mask],
                                         pos_level[with_mask],
                                         pos_cell[with_mask])
        num_pos = len(img_inds)

        zero = mask_feats.sum() * 0
        losses = dict(
            loss_ts=zero,
            loss_ts_corr=zero,
            loss_corr=zero,
            mil_positives=zero.detach() + num_pos)
        if num_pos:
            kernels = self.gather_kernels(mlvl_kernel_preds, img_inds,
                                          pos_level, pos_cell)
            logits = self.dynamic_masks(kernels, mask_feats, img_inds)
            pos_boxes = torch.cat([
                gt.box_masks[t['pos_gt'][t['valid'][t['pos_gt']]]]
                for gt, t in zip(batch_gt_instances, targets)
            ])
            losses['loss_mask'] = self.loss_mask(logits, pos_boxes)
        else:
            losses['loss_mask'] = zero

        flatten_labels = torch.cat([
            torch.cat(level_labels)
            for level_labels in zip(*[t['labels'] for t in targets])
        ])
        flatten_cls_preds = torch.cat([
            preds.permute(0, 2, 3, 1).reshape(-1, self.num_classes)
            for preds in mlvl_cls_preds
        ])
        # mmdet's avg_factor: cells with a foreground label, plus one
        num_fg = int((flatten_labels != self.num_classes).sum())
        losses['loss_cls'] = self.loss_cls(
            flatten_cls_preds, flatten_labels, avg_factor=num_fg + 1)

        if not (gates['ts'] or gates['corr']) or not num_pos:
            if gates['ts']:  # open, but no positive carries a label
                self.last_pseudo_masks = self.pseudo_mask_records(
                    mask_feats.new_zeros((0, *featmap_size), dtype=torch.bool),
                    img_inds, pos_gt, batch_gt_instances)
            losses['corr_queries'] = zero.detach()
            return losses
        if teacher is None or images is None:
            raise ValueError('DiscoBoxSOLOv2Head: the teacher terms are on '
                             'but no teacher outputs or images were given')
        if image_valid is None:
            image_valid = torch.ones_like(images[:, 0], dtype=torch.bool)
        pairwise = contrast_sensitive_kernel(
            images,
            self.mean_field_cfg['kernel_size'],
            self.mean_field_cfg['alpha0'],
            self.mean_field_cfg['theta0'],
            self.mean_field_cfg['theta1'],
            valid=image_valid)
        if gates['ts']:
            with torch.no_grad():
                t_kernels = self.gather_kernels(teacher['kernels'], img_inds,
                                                pos_level, pos_cell)
                t_probs = self.dynamic_masks(t_kernels, teacher['mask_feats'],
                                             img_inds).sigmoid()
            probs = logits.sigmoid()
            losses['loss_ts'], ts_labels = self.consistency_loss(
                probs,
                t_probs,
                pos_boxes.bool(),
                pairwise[img_inds],
                return_labels=True)
            self.last_pseudo_masks = self.pseudo_mask_records(
                ts_labels, img_inds, pos_gt, batch_gt_instances)
        if gates['corr']:
            losses.update(
                self.correspondence_losses(mlvl_kernel_preds, mask_feats,
                                           student_feats, teacher, targets,
                                           batch_gt_instances, pairwise,
                                           gates['ts_corr']))
        else:
            losses['corr_queries'] = zero.detach()
        return losses

    def consistency_loss(
            self,
            probs: Tensor,
            teacher_probs: Tensor,
            boxes: Tensor,
            pairwise: Tensor,
            cross_unary: Optional[Tensor] = None,
            grad_scale: float = 1.0,
            return_labels: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """``L_con``: dice of the student against the structured
        teacher's labels.

        Args:
            probs (Tensor): ``[n, H, W]`` student probabilities (grad).
            teacher_probs (Tensor): ``[n, H, W]`` teacher probabilities.
            boxes (Tensor): ``[n, H, W]`` bool box masks.
            pairwise (Tensor): ``[n, k*k, H, W]`` mean-field weights.
            cross_unary (Tensor, optional): ``[n, 2, H, W]``.
            grad_scale (float): Scale of the gradient, not of the value
                (the release's ``s * gamma + s.detach() * (1 - gamma)``
                for the cross-image term, ``gamma`` 0.01).
            return_labels (bool): Also return the labels ``[n, H, W]``
                (bool, mean-field marginal ``> 0.5``).
        """
        cfg = self.mean_field_cfg
        labels = mean_field(
            (teacher_probs + probs.detach()) / 2,
            pairwise,
            boxes,
            num_iters=cfg['num_iters'],
            base=cfg['base'],
            cross_unary=cross_unary,
            cross_weight=self.corr_cfg['cross_weight']) > 0.5
        near_box = F.max_pool2d(boxes[:, None].float(), 3, 1, 1)[:, 0]
        if grad_scale != 1.0:
            probs = probs * grad_scale + probs.detach() * (1 - grad_scale)
        dice = projection_dice(
            (probs * near_box).flatten(1),
            labels.flatten(1).float(),
            eps=0.002)
        loss = dice.mean() * self.ts_loss_weight
        return (loss, labels) if return_labels else loss

    @torch.no_grad()
    def pseudo_mask_records(self, labels: Tensor, img_inds: Tensor,
                            pos_gt: Tensor,
                            batch_gt_instances: InstanceList) -> List[dict]:
        """Per-image pseudo masks from the per-cell mean-field labels.

        An instance has one label per positive cell (up to 3 x 3 cells on
        each of its levels), all at the mask features' resolution. Its
        pseudo mask is their **majority vote**: a pixel is foreground when
        more than half of the instance's labels are (a tie is background).
        As the mean-field marginals take the two values ``base`` and ``1 -
        base`` only, this equals thresholding their mean at 0.5.

        Args:
            labels (Tensor): ``[n, H, W]`` bool labels of the positive
                cells with a mask loss.
            img_inds (Tensor): ``[n]`` image of each row.
            pos_gt (Tensor): ``[n]`` index of each row's instance in its
                image's ``gt_instances``.
            batch_gt_instances (list[InstanceData]): One per image.

        Returns:
            list[dict]: One per image: ``masks [G, H, W]`` bool, ``valid
            [G]`` (instances with at least one labelled cell),
            ``eval_masks`` (``gt_instances.eval_masks`` or None) and
            ``stride`` (``mask_stride``: the grid is that of the box
            masks, cell ``(i, j)`` at input pixel ``(s j + s // 2, s i +
            s // 2)`` of the padded batch).
        """
        records = []
        for img, gt in enumerate(batch_gt_instances):
            sel = img_inds == img
            rows, inst = labels[sel], pos_gt[sel]
            num_gts = len(gt.labels)
            votes = rows.new_zeros(
                (num_gts, *labels.shape[-2:]),
                dtype=torch.long).index_add_(0, inst, rows.long())
            counts = torch.bincount(inst, minlength=num_gts)
            records.append(
                dict(
                    masks=2 * votes > counts[:, None, None],
                    valid=counts > 0,
                    eval_masks=gt.get('eval_masks'),
                    stride=self.mask_stride))
        return records

    def correspondence_losses(self,
                              mlvl_kernel_preds: List[Tensor],
                              mask_feats: Tensor,
                              student_feats: Tensor,
                              teacher: dict,
                              targets: List[dict],
                              batch_gt_instances: InstanceList,
                              pairwise: Tensor,
                              with_mean_field: bool = True) -> dict:
        """``L_nce`` and (``with_mean_field``) the cross-image ``L_con``
        of one query per instance, with the bank updates (the release's
        ``corr_loss``).

        Every instance with a non-empty box mask is a query at its best
        cell. Its RoI is the extent of its stride-4 box mask (release:
        ``min..max + 1`` of the target's pixels), on the student's and the
        teacher's finest FPN level (``feat_size`` x ``feat_size``, ReLU +
        L2) and on both mask probability maps (``mask_size``). Per query
        (``[K, P, P]`` cost volumes, ``P = feat_size^2``):

        - partners: :meth:`ObjectMemoryBank.retrieve` with the student's
          RoI mask and features; at least ``min_retrieval`` of them;
        - correspondence: ``solve_on='student'`` (release: ``solve(qobj,
          kobjs, roi_s_feat)``) solves the student's detached cost volume
          ``C_u`` against the partners' (teacher) features; ``'teacher'``
          (the paper's "T inferred from teacher", Sec. 3.4) solves the
          teacher's;
        - ``L_nce`` on the student's ``C_u`` (``loss_corr``), averaged over
          queries;
        - cross-image unary (:func:`transfer_masks`, gated by the student's
          RoI mask) pasted onto the query's box.

        ``bank_push='interleaved'`` (release) pushes each query's teacher
        RoI right after its retrieval, so later queries of the same step
        can retrieve it; ``'after_losses'`` pushes them all at the end (the
        paper, Sec. 3.6 / Appendix C.3). ``loss_ts_corr``: mean-field with
        the cross-image unary (zero for queries without partners) over
        **all** queries, dice averaged over them, times ``ts_loss_weight``;
        its gradient (not its value) is scaled by ``ts_weight`` (release:
        ``s * 0.01 + s.detach() * 0.99``).
        """
        cfg = self.corr_cfg
        bank = self.memory_bank
        if bank is None:
            raise RuntimeError(
                'DiscoBoxSOLOv2Head: the correspondence gate is open but no '
                "memory bank is bound; add dict(type='MemoryBankHook', bank="
                "dict(type='ObjectMemoryBank', ...)) to custom_hooks")
        zero = mask_feats.sum() * 0
        img_inds = torch.cat([
            torch.full_like(t['valid'], i, dtype=torch.long)
            for i, t in enumerate(targets)
        ])
        valid = torch.cat([t['valid'] for t in targets])
        levels = torch.cat([t['best_level'] for t in targets])[valid]
        cells = torch.cat([t['best_cell'] for t in targets])[valid]
        img_inds = img_inds[valid]
        labels = torch.cat([gt.labels for gt in batch_gt_instances])[valid]
        box_masks = torch.cat([gt.box_masks
                               for gt in batch_gt_instances])[valid].bool()
        if not len(box_masks):
            return dict(
                loss_corr=zero, loss_ts_corr=zero, corr_queries=zero.detach())
        # input-pixel boxes of the stride-4 box masks' extents
        boxes = masks_to_boxes(box_masks) * self.mask_stride

        probs = self.dynamic_masks(
            self.gather_kernels(mlvl_kernel_preds, img_inds, levels, cells),
            mask_feats, img_inds).sigmoid()
        feat_stride = mask_feats.shape[-1] * self.mask_stride / \
            student_feats.shape[-1]
        # mmcv's RoIAlign wants boxes in the features' dtype (fp16 under AMP)
        rois = torch.cat([img_inds[:, None].to(boxes.dtype), boxes],
                         dim=1).to(student_feats.dtype)
        size, msize = cfg['feat_size'], cfg['mask_size']
        feats = relu_l2_normalise(
            roi_align(student_feats, rois, (size, size), 1.0 / feat_stride, 0,
                      'avg', True))
        own = torch.cat([
            torch.arange(len(boxes), device=boxes.device)[:, None].to(
                boxes.dtype), boxes
        ],
                        dim=1).to(probs.dtype)
        with torch.no_grad():
            t_probs = self.dynamic_masks(
                self.gather_kernels(teacher['kernels'], img_inds, levels,
                                    cells), teacher['mask_feats'],
                img_inds).sigmoid()
            t_feats = relu_l2_normalise(
                roi_align(teacher['feats'], rois, (size, size),
                          1.0 / feat_stride, 0, 'avg', True))
            scale = 1.0 / self.mask_stride
            q_masks = roi_align(probs.detach()[:, None], own, (msize, msize),
                                scale, 0, 'avg', True)[:, 0]
            t_masks = roi_align(t_probs[:, None], own, (msize, msize), scale,
                                0, 'avg', True)[:, 0]

        interleaved = cfg['bank_push'] == 'interleaved'
        nce, num_queries = [], 0
        cross = probs.new_zeros(len(boxes), 2, *probs.shape[-2:])
        for q in range(len(boxes)):
            keys = bank.retrieve(
                int(labels[q]), q_masks[q], feats[q].detach(), boxes[q])
            if keys is not None and len(keys['boxes']) >= cfg['min_retrieval']:
                s_cost = cost_volume(feats[q], keys['feats'])
                with torch.no_grad():
                    cost = s_cost.detach() if cfg['solve_on'] == 'student' \
                        else cost_volume(t_feats[q], keys['feats'])
                    plan = solve_correspondence(
                        cost, (size, size),
                        method=cfg['method'],
                        num_iters=cfg['num_iters'],
                        window=cfg['window'],
                        smooth_size=cfg['smooth_size'],
                        query_mask=F.adaptive_avg_pool2d(
                            q_masks[q][None], size)[0],
                        key_masks=F.adaptive_avg_pool2d(keys['masks'], size),
                        eps=cfg['eps'],
                        gamma=cfg['gamma'])
                    if with_mean_field:
                        self._paste(
                            cross[q],
                            transfer_masks(plan, keys['masks'], (size, size),
                                           cost, q_masks[q]), boxes[q])
                nce.append(self.loss_corr(s_cost, plan))
                num_queries += 1
            if interleaved:
                bank.push(labels[q:q + 1], t_feats[q:q + 1], t_masks[q:q + 1],
                          boxes[q:q + 1])

        out = dict(
            corr_queries=zero.detach() + num_queries,
            loss_corr=torch.stack(nce).mean() if nce else zero,
            loss_ts_corr=zero)
        if with_mean_field:
            out['loss_ts_corr'] = self.consistency_loss(
                probs,
                t_probs,
                box_masks,
                pairwise[img_inds],
                cross_unary=cross,
                grad_scale=cfg['ts_weight'])
        if not interleaved:
            # Sec. 3.6: the teacher's RoIs, pushed after the losses
            bank.push(labels, t_feats, t_masks, boxes)
        return out

    def _paste(self, canvas: Tensor, unary: Tensor, box: Tensor) -> None:
        """Write ``unary [2, h, w]``, which spans ``box`` (input pixels)
        exactly, into ``canvas [2, H, W]`` at the mask stride: canvas pixel
        ``(i, j)`` samples input point ``(s j + s/2, s i + s/2)`` (as the
        box masks do), bilinearly, if it lies inside the box."""
        s = self.mask_stride
        height, width = canvas.shape[-2:]
        x1, y1, x2, y2 = box.tolist()
        cols = torch.arange(width, device=canvas.device) * s + s / 2
        rows = torch.arange(height, device=canvas.device) * s + s / 2
        cols = cols[(cols >= x1) & (cols < x2)]
        rows = rows[(rows >= y1) & (rows < y2)]
        if not len(cols) or not len(rows):
            return
        # grid_sample coordinates, align_corners=False: -1 and 1 are the
        # outer edges of the unary's border cells, i.e. the box edges
        gx = (cols - x1) / max(x2 - x1, 1e-6) * 2 - 1
        gy = (rows - y1) / max(y2 - y1, 1e-6) * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing='ij')[::-1], -1)
        left, top = int((cols[0] - s / 2) // s), int((rows[0] - s / 2) // s)
        canvas[:, top:top + len(rows), left:left + len(cols)] = F.grid_sample(
            unary[None].to(canvas.dtype),
            grid[None].to(canvas.dtype),
            mode='bilinear',
            padding_mode='border',
            align_corners=False)[0]

    # -- inference ----------------------------------------------------------
    def _predict_by_feat_single(self, *args, **kwargs) -> InstanceData:
        """SOLOv2 inference, with boxes from the mask extents (as the
        release; mmdet's SOLOv2 leaves them zero), so box AP is
        meaningful."""
        results = super()._predict_by_feat_single(*args, **kwargs)
        results.bboxes = masks_to_boxes(results.masks)
        return results
