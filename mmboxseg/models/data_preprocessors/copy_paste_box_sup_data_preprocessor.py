# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional

import torch
from mmdet.structures.bbox import HorizontalBoxes, get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from mmboxseg.registry import MODELS, TRANSFORMS
from .box_supervision_data_preprocessor import BoxSupDataPreprocessor


@MODELS.register_module()
class CopyPasteBoxSupDataPreprocessor(BoxSupDataPreprocessor):
    """:class:`BoxSupDataPreprocessor` that first applies a batch-side
    copy-paste transform (SIM's :class:`WeakCopyPaste`) to the raw images.

    In training, per image and before anything else:

    1. ``copy_paste`` pastes bank instances onto the raw uint8 image and
       rewrites its boxes and labels (whether to paste is drawn once for
       the batch with ``prob_per='batch'``, the code; see
       :class:`WeakCopyPaste` for why it runs here);
    2. BoxInst's colour similarity and box masks are computed from the
       pasted image and new boxes as usual; the box masks then lose the
       pixels hidden by pastes;
    3. instances left without a stride-4 pixel are dropped;
    4. every sample gets ``gt_instances.pasted`` ``[G]`` bool and
       ``gt_instances.paste_masks`` ``[G, H/4, W/4]`` bool (the visible
       pseudo mask of a pasted instance, empty for the others, sampled like
       the box masks), and ``raw_image`` (the un-normalised, un-padded
       image that was trained on: what SIM pushes into its bank).

    Copy-paste needs box-only annotations: an instance that carries a real
    mask (mixed supervision) would need its mask cut too, which is not
    implemented, so such a batch raises.

    Evaluation masks (``gt_instances.eval_masks`` of
    :class:`PackDetInputsWithEvalMasks`, read by no loss, only by
    :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook`) are never pasted
    and never cut: an image that receives pasted instances gets new
    ground-truth rows (pasted, occluded, removed), so its ``eval_masks`` is
    dropped and the hook skips the image; images nothing was pasted onto
    keep theirs, aligned with their unchanged rows.

    Args:
        copy_paste (dict, optional): Transform config, e.g.
            ``dict(type='WeakCopyPaste')``; None disables pasting (samples
            still get ``pasted``/``paste_masks``/``raw_image``).
        **kwargs: :class:`BoxSupDataPreprocessor` arguments.
    """

    def __init__(self, *args, copy_paste: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if copy_paste is not None and self.mask_stride != 4:
            raise ValueError(
                'CopyPasteBoxSupDataPreprocessor: the memory bank stores '
                f'pseudo masks at stride 4, but mask_stride={self.mask_stride}'
            )
        self.copy_paste = TRANSFORMS.build(copy_paste) \
            if copy_paste is not None else None

    def forward(self, data: dict, training: bool = False) -> dict:
        if not training:
            return super().forward(data, training)
        inputs = list(data['inputs'])  # a stacked tensor or a list
        samples = data['data_samples']
        self.drop_gt_masks(samples)
        visible = [None] * len(inputs)
        if self.copy_paste is not None:
            # one draw for the batch (the code), or one per image
            paste = self.copy_paste.draw() \
                if self.copy_paste.prob_per == 'batch' else None
            for i, (img, sample) in enumerate(zip(inputs, samples)):
                inputs[i], visible[i] = self.paste_one(img, sample, paste)
        else:
            for sample in samples:
                gt = sample.gt_instances
                gt.pasted = torch.zeros(
                    len(gt), dtype=torch.bool, device=gt.labels.device)
        det_data = super().forward(dict(data, inputs=inputs), training)
        for sample, raw, vis in zip(det_data['data_samples'], inputs, visible):
            sample.raw_image = raw
            self.apply_occlusion(sample, vis)
        return det_data

    def paste_one(self,
                  img: Tensor,
                  sample,
                  paste: Optional[bool] = None) -> tuple:
        """Copy-paste on one raw image (``paste``: the batch's draw, None
        to draw for this image); returns the image and the
        full-resolution visible masks (None when nothing was pasted)."""
        gt = sample.gt_instances
        if 'masks' in gt:
            raise ValueError(
                'CopyPasteBoxSupDataPreprocessor: copy-paste needs box-only '
                'annotations, but the batch carries gt masks (mixed '
                'supervision); drop copy_paste or the masks')
        boxes = gt.bboxes
        inputs = dict(
            img=img,
            gt_bboxes=get_box_tensor(boxes),
            gt_bboxes_labels=gt.labels)
        if paste is not None:
            inputs['paste'] = paste
        results = self.copy_paste(inputs)
        vis = results.get('gt_visible_masks')
        if vis is None:
            gt.pasted = results['gt_pasted']
            return img, None
        new_boxes = results['gt_bboxes']
        if isinstance(boxes, HorizontalBoxes):
            new_boxes = HorizontalBoxes(new_boxes)
        # rebuilt from the boxes and labels only: the rows changed, so the
        # image's eval_masks (if any) no longer match them and are dropped
        new_gt = InstanceData(
            bboxes=new_boxes,
            labels=results['gt_bboxes_labels'],
            pasted=results['gt_pasted'],
            occluded=results['gt_occluded'])
        sample.gt_instances = new_gt
        return results['img'], vis

    def apply_occlusion(self, sample, visible: Optional[Tensor]) -> None:
        """Cut hidden pixels from the box masks; attach paste masks.

        Pasted or occluded instances that keep full-resolution pixels but
        none of the stride-4 samples are dropped: their mask targets would
        be empty. (Small un-occluded boxes between the samples are kept, as
        BoxInst keeps them.)"""
        gt = sample.gt_instances
        box_masks = gt.box_masks
        if visible is None:
            gt.paste_masks = torch.zeros_like(box_masks)
            return
        stride = self.mask_stride
        start = stride // 2
        sampled = visible[:, start::stride, start::stride].to(box_masks.device)
        strided = torch.zeros_like(box_masks)
        h, w = sampled.shape[-2:]
        strided[:, :h, :w] = sampled
        cut = box_masks & strided
        touched = (gt.pasted | gt.occluded).to(cut.device)
        lost = touched & ~cut.flatten(1).any(dim=1)
        gt.box_masks = cut
        gt.paste_masks = strided & gt.pasted.to(strided.device)[:, None, None]
        if lost.any():
            sample.gt_instances = gt[~lost]
