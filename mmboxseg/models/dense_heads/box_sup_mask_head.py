# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional, Tuple

import torch
from mmdet.models.dense_heads import CondInstMaskHead
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList
from mmengine.structures import InstanceData
from torch import Tensor

from mmboxseg.models.losses import (PairwiseAffinityLoss,
                                    pairwise_neg_log_same_prob)
from mmboxseg.registry import MODELS

SUPERVISION_MODES = ('box', 'mixed', 'mask')


@MODELS.register_module()
class BoxSupMaskHead(CondInstMaskHead):
    """CondInst dynamic mask head trained from boxes (BoxInst), optionally
    with masks for the instances that have them (mixed supervision).

    Losses (Tian et al., "BoxInst", CVPR 2021):

    - ``loss_mask_project``: Eq. 3, the projection term, per sampled
      positive proposal against the box mask of its ground truth;
    - ``loss_mask_pairwise``: Eq. 8, the colour-pairwise term with edge
      weights ``1{S_e >= tau} * b_centre``, ramped up linearly over
      ``warmup_iters`` (AdelaiDet's ``_iter`` buffer: it counts training
      steps from 1, lives in the state dict and so survives ``--resume``);
    - ``loss_mask`` (``supervision='mixed'`` only, paper Sec. 3.6): the
      CondInst dice loss for instances whose annotation carries a mask.
      An instance whose mask is empty after the pipeline (box-only
      annotation) gets the two box terms instead.

    With ``supervision='box'`` (default) ``gt_instances.masks`` is never
    read, even when present.  ``supervision='mask'`` is plain CondInst (dice
    loss on every instance, no box terms, no colour similarity needed): the
    fully supervised upper bound with the same network.

    Differences from mmdet 3.3.0's ``BoxInstMaskHead`` (AdelaiDet parity):
    dynamic-layer weights are reshaped by ``feat_channels`` (mmdet reshapes
    by ``in_channels`` and crashes unless both are equal), so AdelaiDet's
    8-channel, 233-parameter head is available; the pairwise term is
    normalised over the whole batch; the per-ground-truth top-k proposal
    sampling is vectorised.

    Args:
        supervision (str): ``'box'``, ``'mixed'`` or ``'mask'``. Defaults
            to ``'box'``.
        pairwise_color_thresh (float): tau of Eq. 8. Defaults to 0.3.
        warmup_iters (int): Pairwise-term warm-up. Defaults to 10000.
        loss_project (dict): Config of the projection loss.
        loss_pairwise (dict): Config of the pairwise loss; its
            ``kernel_size``/``dilation`` must match the preprocessor's.
        loss_mask (dict): Mask loss of mixed supervision (CondInst dice).
        **kwargs: :class:`CondInstMaskHead` arguments.
    """

    def __init__(self,
                 *args,
                 supervision: str = 'box',
                 pairwise_color_thresh: float = 0.3,
                 warmup_iters: int = 10000,
                 loss_project: ConfigType = dict(type='BoxProjectionLoss'),
                 loss_pairwise: ConfigType = dict(
                     type='PairwiseAffinityLoss', kernel_size=3, dilation=2),
                 loss_mask: ConfigType = dict(
                     type='DiceLoss',
                     use_sigmoid=True,
                     activate=True,
                     eps=5e-6,
                     loss_weight=1.0),
                 **kwargs) -> None:
        if supervision not in SUPERVISION_MODES:
            raise ValueError(f'supervision must be one of '
                             f'{SUPERVISION_MODES}, got {supervision!r}')
        super().__init__(*args, loss_mask=loss_mask, **kwargs)
        self.supervision = supervision
        self.pairwise_color_thresh = pairwise_color_thresh
        self.warmup_iters = warmup_iters
        self.loss_project = MODELS.build(loss_project)
        self.loss_pairwise = MODELS.build(loss_pairwise)
        self.register_buffer('_iter', torch.zeros((), dtype=torch.long))

    # -- architecture -----------------------------------------------------
    def parse_dynamic_params(
            self, params: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        """Split ``[N, num_params]`` into per-layer conv weights/biases.

        Hidden layers have ``feat_channels`` outputs (mmdet reshapes by
        ``in_channels``, which is only right when the two are equal).
        """
        num_insts = params.size(0)
        splits = list(
            torch.split_with_sizes(
                params, self.weight_nums + self.bias_nums, dim=1))
        weights, biases = splits[:self.num_layers], splits[self.num_layers:]
        for i in range(self.num_layers):
            out_ch = self.feat_channels if i < self.num_layers - 1 else 1
            weights[i] = weights[i].reshape(num_insts * out_ch, -1, 1, 1)
            biases[i] = biases[i].reshape(num_insts * out_ch)
        return weights, biases

    # -- training ---------------------------------------------------------
    def loss(self,
             x: Tuple[Tensor],
             batch_data_samples: SampleList,
             positive_infos: Optional[InstanceList] = None,
             **kwargs) -> dict:
        """Read the per-image colour similarity that
        :class:`BoxSupDataPreprocessor` attached to the samples."""
        if positive_infos is None:
            raise ValueError('BoxSupMaskHead needs positive_infos from the '
                             'bbox head')
        needs_box_targets = self.supervision != 'mask'
        missing = [
            i for i, s in enumerate(batch_data_samples)
            if needs_box_targets and
            ('color_similarity' not in s or 'box_masks' not in s.gt_instances)
        ]
        if missing:
            raise KeyError(
                'BoxSupMaskHead: data samples lack `color_similarity` / '
                '`gt_instances.box_masks`; use '
                "data_preprocessor=dict(type='BoxSupDataPreprocessor', ...)")
        if self.supervision == 'box' and any('masks' in s.gt_instances
                                             for s in batch_data_samples):
            # the box head has seen them already (FCOS centre sampling):
            # refuse rather than train a silently mask-supervised model
            raise ValueError(
                f"{type(self).__name__}(supervision='box') got gt masks: "
                'the box-supervision preprocessor drops them under '
                "supervision='box'; set the same supervision in "
                'model.data_preprocessor and model.mask_head')
        mask_preds = self(x, positive_infos)[0]
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        similarities = [s.get('color_similarity') for s in batch_data_samples]
        image_valid = [s.get('image_valid') for s in batch_data_samples]
        return self.loss_by_feat(mask_preds, batch_gt_instances, similarities,
                                 positive_infos, image_valid)

    def sample_positives(self, positive_info: InstanceData) -> Tensor:
        """Indices of the positive proposals that train masks.

        ``max_masks_to_train`` keeps a random subset (CondInst);
        ``topk_masks_per_img`` keeps, per ground truth, the
        ``max(topk // #gts, 1)`` proposals with the highest
        ``sigmoid(cls).max() * sigmoid(ctr)`` (AdelaiDet BoxInst).
        """
        gt_inds = positive_info.pos_assigned_gt_inds
        num_pos = gt_inds.numel()
        device = gt_inds.device
        if num_pos == 0:
            return gt_inds.new_zeros((0, ))
        if self.max_masks_to_train != -1 and \
                num_pos > self.max_masks_to_train:
            return torch.randperm(
                num_pos, device=device)[:self.max_masks_to_train]
        if self.topk_masks_per_img == -1:
            return torch.arange(num_pos, device=device)
        num_gts = gt_inds.unique().numel()
        k = max(int(self.topk_masks_per_img / num_gts), 1)
        score = positive_info.scores.sigmoid().max(dim=1)[0] * \
            positive_info.centernesses.sigmoid().reshape(-1)
        by_score = torch.argsort(score, descending=True, stable=True)
        grouped = by_score[torch.argsort(gt_inds[by_score], stable=True)]
        group_ids = gt_inds[grouped]
        counts = torch.bincount(group_ids)
        starts = counts.cumsum(0) - counts
        rank = torch.arange(num_pos, device=device) - starts[group_ids]
        return grouped[rank < k]

    def loss_by_feat(self,
                     mask_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_color_similarity: List[Tensor],
                     positive_infos: InstanceList,
                     batch_image_valid: Optional[List[Tensor]] = None,
                     **kwargs) -> dict:
        """Compute the mask losses of a batch.

        Args:
            mask_preds (list[Tensor]): Per image ``[n_i, H, W]`` logits of
                the positive proposals at ``mask_out_stride``.
            batch_gt_instances (list[InstanceData]): With ``bboxes``,
                ``box_masks`` ``[G, H, W]`` and, for mixed supervision,
                ``masks``.
            batch_color_similarity (list[Tensor]): Per image
                ``[k*k - 1, H, W]``.
            positive_infos (list[InstanceData]): From the bbox head.
            batch_image_valid (list[Tensor], optional): Per image
                ``[H, W]`` bool, pixels that are not padding.

        Returns:
            dict[str, Tensor]: ``loss_mask_project``, ``loss_mask_pairwise``
            and, with mixed supervision, ``loss_mask``; plus what
            :meth:`extra_losses` adds.
        """
        if self.training:
            self._iter += 1
        if batch_image_valid is None:
            batch_image_valid = [None] * len(mask_preds)
        preds, box_targets, edge_weights, mask_targets, has_mask = \
            [], [], [], [], []
        sampled = []
        for pred, gt_instances, similarity, valid, pos_info in zip(
                mask_preds, batch_gt_instances, batch_color_similarity,
                batch_image_valid, positive_infos):
            keep = self.sample_positives(pos_info)
            if keep.numel() == 0 or len(gt_instances) == 0:
                continue
            gt_inds = pos_info.pos_assigned_gt_inds[keep]
            preds.append(pred[keep])
            sampled.append((gt_instances, gt_inds, valid, pos_info[keep]))
            if self.supervision != 'box':
                targets = self.strided_gt_masks(gt_instances, pred)[gt_inds]
                mask_targets.append(targets)
                has_mask.append(
                    targets.flatten(1).any(dim=1) if self.supervision ==
                    'mixed' else targets.new_ones(len(targets)))
            if self.supervision == 'mask':
                continue
            box_masks = gt_instances.box_masks[gt_inds]
            if box_masks.shape[-2:] != pred.shape[-2:]:
                raise ValueError(
                    f'box masks {tuple(box_masks.shape[-2:])} and mask '
                    f'predictions {tuple(pred.shape[-2:])} differ in size; '
                    'the preprocessor mask_stride must equal the head '
                    'mask_out_stride')
            colour_edges = similarity >= self.pairwise_color_thresh
            box_targets.append(box_masks)
            edge_weights.append(colour_edges[None] & box_masks[:, None])

        zero = sum(p.sum() for p in mask_preds) * 0.
        if not preds:
            return {
                **self._losses(zero, zero, zero),
                **self.extra_losses(None, [], None, zero, None)
            }
        preds = torch.cat(preds)
        if self.supervision == 'box':
            has_mask = preds.new_zeros(preds.size(0), dtype=torch.bool)
        else:
            mask_targets = torch.cat(mask_targets)
            has_mask = torch.cat(has_mask)

        loss_project = loss_pairwise = loss_mask = zero
        box_only = ~has_mask
        neg_log_same = None
        if box_only.any():
            box_targets = torch.cat(box_targets)[box_only]
            edge_weights = torch.cat(edge_weights)[box_only]
            warmup = min(float(self._iter) / self.warmup_iters, 1.0) \
                if self.warmup_iters > 0 else 1.0
            loss_project = self.loss_project(preds[box_only], box_targets)
            if isinstance(self.loss_pairwise, PairwiseAffinityLoss):
                # computed once: subclasses reuse it (BoxTeacher's affinity)
                neg_log_same = pairwise_neg_log_same_prob(
                    preds[box_only], self.loss_pairwise.kernel_size,
                    self.loss_pairwise.dilation)
                loss_pairwise = self.loss_pairwise(
                    preds[box_only], edge_weights, neg_log_same=neg_log_same)
            else:
                loss_pairwise = self.loss_pairwise(preds[box_only],
                                                   edge_weights)
            loss_pairwise = loss_pairwise * warmup
        if not box_only.all():
            neg_log_same = None  # only shared when it covers every row
        if has_mask.any():
            loss_mask = self.loss_mask(
                preds[has_mask],
                mask_targets[has_mask].float(),
                reduction_override='none').sum() / has_mask.sum()
        return {
            **self._losses(loss_project, loss_pairwise, loss_mask),
            **self.extra_losses(preds, sampled, has_mask, zero, neg_log_same)
        }

    def extra_losses(self, preds: Optional[Tensor], sampled: list,
                     has_mask: Optional[Tensor], zero: Tensor,
                     neg_log_same: Optional[Tensor]) -> dict:
        """Losses that subclasses add on the same sampled proposals.

        Args:
            preds (Tensor | None): ``[N, H, W]`` logits of the sampled
                proposals of the whole batch (None when there are none).
            sampled (list[tuple]): Per image with proposals, in order:
                ``(gt_instances, gt_inds [n_i], image_valid [H, W] | None,
                positive_info [n_i])``, the last the bbox head's positive
                infos of the sampled proposals.
            has_mask (Tensor | None): ``[N]`` bool, proposals supervised by
                a real mask (mixed supervision).
            zero (Tensor): A zero connected to the graph.
            neg_log_same (Tensor | None): ``[N, k*k - 1, H, W]``
                ``-log P(same label)`` of ``preds`` with the pairwise loss's
                kernel and dilation, when every row took the box terms.

        Returns:
            dict[str, Tensor]: Nothing for BoxInst.
        """
        return {}

    def _losses(self, loss_project: Tensor, loss_pairwise: Tensor,
                loss_mask: Tensor) -> dict:
        """The loss dict of the supervision mode (stable keys for logs)."""
        if self.supervision == 'mask':
            return dict(loss_mask=loss_mask)
        losses = dict(
            loss_mask_project=loss_project, loss_mask_pairwise=loss_pairwise)
        if self.supervision == 'mixed':
            losses['loss_mask'] = loss_mask
        return losses

    def strided_gt_masks(self, gt_instances: InstanceData,
                         pred: Tensor) -> Tensor:
        """Ground-truth masks sampled at ``[s//2::s]`` like the box masks
        (mixed supervision only; the preprocessor must pad masks)."""
        if 'masks' not in gt_instances:
            raise KeyError(
                f"supervision='{self.supervision}' needs gt masks: load "
                'them with LoadAnnotations(with_mask=True) (box-only '
                "instances get "
                'empty masks) and set pad_mask=True in the preprocessor')
        masks = gt_instances.masks.to_tensor(
            dtype=torch.bool, device=pred.device)
        start = self.mask_out_stride // 2
        masks = masks[:, start::self.mask_out_stride,
                      start::self.mask_out_stride]
        if masks.shape[-2:] != pred.shape[-2:]:
            raise ValueError(
                f'gt masks sampled to {tuple(masks.shape[-2:])} but mask '
                f'predictions are {tuple(pred.shape[-2:])}: set '
                'pad_mask=True in the data preprocessor')
        return masks
