# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional

import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.utils import InstanceList
from mmengine.config import ConfigDict
from torch import Tensor

from mmboxseg.registry import MODELS

PROXY_TOOL = 'tools/boxcaseg/generate_proxy_masks.py'


@MODELS.register_module()
class ProxyFCNMaskHead(FCNMaskHead):
    """The mask head of BoxCaseg's Proxy Mask R-CNN.

    Mask R-CNN is retrained on *proxy masks* (masks predicted by the
    class-agnostic segmenter for every ground-truth box).  A proxy mask
    whose tight box disagrees with its ground-truth box is probably wrong,
    so its instance takes no part in the mask loss: BoxCaseg Sec. 3.4,
    "those deleted masks are neglected in the back propagation process of
    mask head training" (Table 8: drop threshold 0.95 drops 80 % of the
    COCO masks and gives 30.9 AP vs 29.5 AP without dropping).  The box is
    kept: the RPN and the box head train on every instance (this head only
    changes the mask loss; assignment and sampling are the RoI head's).

    Every positive RoI inherits the agreement of the ground truth it is
    assigned to (``sampling_result.pos_assigned_gt_inds`` into
    ``gt_instances.agreement``); the mask loss is mmdet's
    :class:`FCNMaskHead` loss on the positives whose agreement is
    ``>= drop_thr`` only (for the default mask BCE: the mean over the
    kept RoIs' pixels).  The release's modified Mask R-CNN loss is not
    public (only its data loader, which reads the agreement as
    ``confidence``), so the threshold and the ``>=`` are the paper's.  The
    agreement comes from the ``proxy_box_agreement`` field that
    ``tools/boxcaseg/generate_proxy_masks.py`` writes, loaded by
    :class:`~mmboxseg.datasets.transforms.LoadProxyAnnotations` and packed
    by :class:`~mmboxseg.datasets.transforms.PackProxyDetInputs`.

    Besides ``loss_mask`` the loss dict carries ``mask_kept_frac``, the
    fraction of positive RoIs that the mask loss uses.  Its key has no
    ``'loss'`` in it, so mmengine logs it without adding it to the total
    loss (``BaseModel.parse_losses`` sums the keys that contain
    ``'loss'``); it is 0 when the batch has no positive RoI.

    Args:
        drop_thr (float, optional): Positives assigned to a ground truth
            whose agreement is below this take no part in the mask loss.
            None or 0 keeps every positive (plain :class:`FCNMaskHead`)
            and does not need ``agreement``.  Defaults to 0.95.
        **kwargs: :class:`FCNMaskHead` arguments.
    """

    def __init__(self, *args, drop_thr: Optional[float] = 0.95, **kwargs):
        super().__init__(*args, **kwargs)
        if drop_thr is not None and not 0 <= drop_thr <= 1:
            raise ValueError(
                'ProxyFCNMaskHead: drop_thr must be None or in [0, 1] (an '
                f'IoU), got {drop_thr}')
        self.drop_thr = drop_thr or None

    def _pos_agreement(self, sampling_results: List[SamplingResult],
                       batch_gt_instances: InstanceList) -> Tensor:
        """The agreement of the ground truth of each positive RoI.

        Returns:
            Tensor: ``(num_pos,)``, in the order of the positives of
            ``mask_preds`` (image by image, as ``get_targets``).
        """
        agreements = []
        for i, gt in enumerate(batch_gt_instances):
            if 'agreement' not in gt:
                raise ValueError(
                    f'ProxyFCNMaskHead(drop_thr={self.drop_thr}) needs '
                    '`agreement` on the gt instances, but the gt instances '
                    f'of image {i} of the batch have only {list(gt.keys())}.'
                    ' Use LoadProxyAnnotations and PackProxyDetInputs in the'
                    ' train pipeline (they load the `proxy_box_agreement` '
                    f'field that {PROXY_TOOL} writes; the dataset needs '
                    "extra_instance_fields=['proxy_box_agreement']), or set "
                    'drop_thr=None to train on every mask.')
            agreement = gt.agreement
            if agreement.shape != (len(gt.bboxes), ):
                raise ValueError(
                    f'ProxyFCNMaskHead: image {i} of the batch has '
                    f'{len(gt.bboxes)} gt boxes but an agreement of shape '
                    f'{tuple(agreement.shape)}; a transform that drops '
                    'instances (e.g. RandomCrop, FilterAnnotations) did not '
                    'drop their agreement')
            gt_inds = sampling_results[i].pos_assigned_gt_inds
            agreements.append(agreement.to(gt_inds.device)[gt_inds])
        return torch.cat(agreements)

    def loss_and_target(self, mask_preds: Tensor,
                        sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList,
                        rcnn_train_cfg: ConfigDict) -> dict:
        """Mask loss on the positive RoIs whose ground truth agrees.

        Args:
            mask_preds (Tensor): Mask logits of the positive RoIs,
                ``(num_pos, num_classes, h, w)`` (``num_classes`` is 1
                when class-agnostic).
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image, with
                ``bboxes``, ``labels``, ``masks`` and, unless ``drop_thr``
                is off, ``agreement`` (``(num_gt,)`` float).
            rcnn_train_cfg (:obj:`ConfigDict`): ``train_cfg`` of the RCNN.

        Returns:
            dict: ``loss_mask``: dict with ``loss_mask`` (the loss) and
            ``mask_kept_frac`` (kept positives / positives, detached);
            ``mask_targets``: ``(num_pos, h, w)`` targets of all positives,
            as :meth:`FCNMaskHead.get_targets` (dropped ones included).
        """
        mask_targets = self.get_targets(
            sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances,
            rcnn_train_cfg=rcnn_train_cfg)
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        num_pos = mask_preds.size(0)
        if self.drop_thr is None:
            keep = torch.ones(
                num_pos, dtype=torch.bool, device=mask_preds.device)
        else:
            agreement = self._pos_agreement(sampling_results,
                                            batch_gt_instances)
            keep = agreement.to(mask_preds.device) >= self.drop_thr
        if keep.numel() != num_pos:
            raise ValueError(
                f'ProxyFCNMaskHead: {num_pos} mask predictions but '
                f'{keep.numel()} positive RoIs in the sampling results')

        if not keep.any():
            # no kept positive: a zero that keeps the graph (every rank of
            # a distributed run must see the mask head's parameters used)
            loss_mask = mask_preds.sum() * 0
        else:
            labels = pos_labels[keep]
            if self.class_agnostic:
                labels = torch.zeros_like(labels)
            loss_mask = self.loss_mask(mask_preds[keep], mask_targets[keep],
                                       labels)
        kept_frac = keep.float().sum() / max(num_pos, 1)
        loss = dict(loss_mask=loss_mask, mask_kept_frac=kept_frac.detach())
        return dict(loss_mask=loss, mask_targets=mask_targets)
