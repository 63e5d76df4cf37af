# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from torch import Tensor

from mmboxseg.models.utils import masks_to_boxes, strided_box_masks
from mmboxseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class WeakCopyPaste(BaseTransform):
    """Online weakly-supervised copy-paste (SIM, Sec. 3.3 and supplement
    6.1): paste instances of a recent image, cut out with their *pseudo*
    masks, onto the current image.

    With probability ``prob``, drawn once per batch (``prob_per='batch'``,
    the code: one ``random.random() >= 0.5`` per forward pass, by
    :class:`CopyPasteBoxSupDataPreprocessor`) or per image (``'image'``),
    every image of the batch gets:

    1. a random entry of the :class:`MemoryBank` (its own for each image);
    2. ``n = clip(int(select_ratio * K), min_select, max_select)`` of its
       ``K`` instances drawn by importance sampling, with probability
       proportional to ``score ** score_power`` (the bank's scores), *with*
       replacement (``replacement=True``, the code's ``random.choices``: an
       instance can be drawn twice and is then pasted twice); without,
       ``n`` is also capped by the number of instances of non-zero weight.
       A source whose weights are all zero pastes nothing (the code's
       ``random.choices`` raises there);
    3. each instance's paste mask is its stored probability (the momentum
       encoder's instance map, see :class:`SIMMaskHead` ``paste_source``),
       bilinearly up-sampled from stride 4, ``> mask_thr`` and inside its
       box; the instances are pasted in the drawn order at their original
       position, cropped to the current image (nothing lands outside it or
       on its padding);
    4. every current instance loses the pixels covered by the pastes (the
       code's ``mask & (mask ^ alpha)``); with ``occlude_pastes=True`` a
       pasted instance also loses the pixels of later pastes (the code
       keeps every pasted mask whole, overlaps included); instances with
       fewer than ``min_visible_area`` visible pixels are removed; the
       boxes of partly occluded instances are re-derived from their
       visible pixels (intersected with the old box);
    5. pasted instances are marked in ``gt_pasted``; their visible pseudo
       masks are the targets of SIM's paste loss (Eq. 9).

    The bank's masks are at stride 4
    (:class:`CopyPasteBoxSupDataPreprocessor` checks its ``mask_stride``).
    The occlusion geometry is computed at full resolution on the CPU: at
    COCO scale that is ``[G, h, w]`` booleans per pasted image.

    Numbers follow the public code (``copypaste.py``, ``condinst.py``):
    ``prob`` 0.5 per batch, ``select_ratio`` 0.5 (the paper: a quarter),
    1 to 3 instances, weights ``score ** 3`` with replacement,
    ``mask_thr`` 0.7, pasting only once the bank is full.

    **Where it runs.** Inside :class:`CopyPasteBoxSupDataPreprocessor`, on
    the raw uint8 batch, before BoxInst's colour similarity and box masks
    are computed, so both describe the pasted image. Not in the dataset
    pipeline: data-loader workers are separate processes holding a copy of
    the bank from when they started, so they would never see the pseudo
    masks the detector keeps producing. Not in the detector: the detector
    sees normalised, padded tensors after the colour similarity was
    computed from the un-pasted pixels.

    Input ``results`` keys: ``img`` ``[C, h, w]`` uint8 tensor,
    ``gt_bboxes`` ``[G, 4]`` tensor, ``gt_bboxes_labels`` ``[G]`` and
    optionally ``paste`` (bool, the batch's draw of :meth:`draw`; without
    it the image draws its own). Output adds ``gt_pasted`` ``[G']`` bool
    and, when something was pasted, ``gt_visible_masks`` ``[G', h, w]``
    bool (the visible part of each box or pasted mask) and ``gt_occluded``
    ``[G']`` bool (lost pixels to a paste); ``img``, ``gt_bboxes`` and
    ``gt_bboxes_labels`` are replaced.

    Args:
        prob (float): Probability to paste.
        prob_per (str): ``'batch'`` or ``'image'``.
        select_ratio (float): Fraction of the source's instances to paste.
        min_select (int): At least this many (if the source has them).
        max_select (int): At most this many.
        score_power (float): Importance-sampling exponent.
        replacement (bool): Sample with replacement.
        occlude_pastes (bool): Later pastes occlude earlier ones.
        mask_thr (float): Threshold of the up-sampled stored probability
            (the code's 0.7).
        min_bank_size (int, optional): Paste only once the bank holds this
            many entries; None waits until it is full (the code).
        min_visible_area (int): Instances with fewer visible pixels are
            removed (1: only fully occluded ones).
    """

    def __init__(self,
                 prob: float = 0.5,
                 prob_per: str = 'batch',
                 select_ratio: float = 0.5,
                 min_select: int = 1,
                 max_select: int = 3,
                 score_power: float = 3.0,
                 replacement: bool = True,
                 occlude_pastes: bool = False,
                 mask_thr: float = 0.7,
                 min_bank_size: Optional[int] = None,
                 min_visible_area: int = 1) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'WeakCopyPaste: prob must be in [0, 1], got '
                             f'{prob}')
        if not 1 <= min_select <= max_select:
            raise ValueError('WeakCopyPaste: need 1 <= min_select <= '
                             f'max_select, got {min_select}, {max_select}')
        if prob_per not in ('batch', 'image'):
            raise ValueError("WeakCopyPaste: prob_per must be 'batch' or "
                             f"'image', got {prob_per!r}")
        self.prob = prob
        self.prob_per = prob_per
        self.replacement = replacement
        self.occlude_pastes = occlude_pastes
        self.select_ratio = select_ratio
        self.min_select = min_select
        self.max_select = max_select
        self.score_power = score_power
        self.mask_thr = mask_thr
        self.min_bank_size = min_bank_size
        self.min_visible_area = max(int(min_visible_area), 1)
        # set by mmboxseg.engine.hooks.MemoryBankHook
        self.memory_bank = None

    def ready(self) -> bool:
        """Whether the bank is filled enough to paste from."""
        bank = self.memory_bank
        if bank is None:
            raise RuntimeError('WeakCopyPaste has no memory bank; add '
                               "dict(type='MemoryBankHook') to custom_hooks")
        need = bank.length if self.min_bank_size is None else \
            self.min_bank_size
        return len(bank) >= max(need, 1)

    def draw(self) -> bool:
        """Whether to paste: the bank is :meth:`ready` and a uniform draw
        from the bank's generator is below ``prob`` (the code pastes when
        ``random.random() >= 0.5``, the same probability)."""
        if not self.ready():
            return False
        gen = self.memory_bank.generator
        return float(torch.rand((), generator=gen)) < self.prob

    def transform(self, results: dict) -> dict:
        img = results['img']
        labels = results['gt_bboxes_labels']
        results['gt_pasted'] = torch.zeros(
            len(labels), dtype=torch.bool, device=labels.device)
        paste = results.pop('paste', None)
        if paste is None:
            paste = self.draw()
        if not paste or not self.ready():
            return results
        gen = self.memory_bank.generator
        source = self.memory_bank.sample()
        picks = self.select(source['scores'], gen)
        if picks.numel() == 0:
            return results
        paste_masks = self.paste_masks(source, picks, img.shape[-2:])
        nonempty = paste_masks.flatten(1).any(dim=1)
        if not nonempty.any():
            return results
        picks, paste_masks = picks[nonempty], paste_masks[nonempty]
        return self.paste(results, source, picks, paste_masks.to(img.device))

    def select(self, scores: Tensor, generator: torch.Generator) -> Tensor:
        """Importance sampling of the instances to paste: ``[n]`` indices."""
        weights = scores.clamp(min=0).double()**self.score_power
        available = int((weights > 0).sum())
        num = min(
            max(int(self.select_ratio * len(scores)), self.min_select),
            self.max_select)
        if not self.replacement:
            num = min(num, available)
        if num == 0 or available == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.multinomial(
            weights, num, replacement=self.replacement, generator=generator)

    def paste_masks(self, source: dict, picks: Tensor,
                    out_hw: Tuple[int, int]) -> Tensor:
        """``[n, h, w]`` bool full-resolution masks of the picked source
        instances on the current image's ``(h, w)`` grid."""
        src_h, src_w = source['image'].shape[-2:]
        probs = source['mask_probs'][picks].float()[None] / 255.0
        probs = F.interpolate(
            probs, scale_factor=4, mode='bilinear',
            align_corners=False)[0, :, :src_h, :src_w]
        boxes = source['bboxes'][picks]
        masks = (probs > self.mask_thr) & strided_box_masks(
            boxes, (src_h, src_w), 1)
        h, w = out_hw
        out = masks.new_zeros((len(picks), h, w))
        ch, cw = min(h, src_h), min(w, src_w)
        out[:, :ch, :cw] = masks[:, :ch, :cw]
        return out

    def paste(self, results: dict, source: dict, picks: Tensor,
              paste_masks: Tensor) -> dict:
        img = results['img']
        boxes = results['gt_bboxes'].float()
        labels = results['gt_bboxes_labels']
        h, w = img.shape[-2:]
        device = img.device
        # later pastes cover earlier ones: occluder of paste k is the union
        # of pastes k+1..n (a reversed cumulative OR), of current instances
        # all pastes
        covered_after = paste_masks.flip(0).cumsum(0).flip(0) > 0
        occluded_by_later = torch.cat(
            [covered_after[1:],
             covered_after.new_zeros((1, h, w))])
        union = covered_after[0]

        src_img = source['image'].to(device)
        canvas = img.clone()
        ch, cw = min(h, src_img.shape[-2]), min(w, src_img.shape[-1])
        region = union[:ch, :cw]
        canvas[:, :ch, :cw] = torch.where(region[None], src_img[:, :ch, :cw],
                                          canvas[:, :ch, :cw])

        own = strided_box_masks(boxes.to(device), (h, w), 1)
        own_visible = own & ~union[None]
        if not self.occlude_pastes:
            occluded_by_later = torch.zeros_like(occluded_by_later)
        pasted_visible = paste_masks & ~occluded_by_later
        visible = torch.cat([own_visible, pasted_visible])
        src_boxes = source['bboxes'][picks].to(boxes)
        old_boxes = torch.cat([boxes, src_boxes])
        tight = masks_to_boxes(visible).to(boxes)
        top_left = torch.maximum(old_boxes[:, :2], tight[:, :2])
        bottom_right = torch.minimum(old_boxes[:, 2:], tight[:, 2:])
        new_boxes = torch.cat([top_left, bottom_right], dim=1)
        # current instances that lost no pixel keep their exact box
        own_whole = (own_visible == own).flatten(1).all(dim=1)
        new_boxes[:len(boxes)][own_whole] = boxes[own_whole]
        keep = visible.flatten(1).sum(dim=1) >= self.min_visible_area
        pasted = torch.cat([
            torch.zeros(len(boxes), dtype=torch.bool, device=device),
            torch.ones(len(picks), dtype=torch.bool, device=device)
        ])
        results['img'] = canvas
        results['gt_bboxes'] = new_boxes[keep]
        results['gt_bboxes_labels'] = torch.cat(
            [labels, source['labels'][picks].to(labels)])[keep]
        results['gt_pasted'] = pasted[keep]
        results['gt_visible_masks'] = visible[keep]
        pasted_hidden = (paste_masks & occluded_by_later).flatten(1).any(1)
        results['gt_occluded'] = torch.cat([~own_whole, pasted_hidden])[keep]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, '
                f'prob_per={self.prob_per!r}, '
                f'select_ratio={self.select_ratio}, '
                f'select=[{self.min_select}, {self.max_select}], '
                f'score_power={self.score_power}, '
                f'replacement={self.replacement}, '
                f'occlude_pastes={self.occlude_pastes}, '
                f'mask_thr={self.mask_thr})')


__all__ = ['WeakCopyPaste', 'masks_to_boxes']
