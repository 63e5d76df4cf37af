# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmboxseg.registry import HOOKS

DATA_BATCH = Optional[Union[dict, tuple, list]]


def strided_truth(masks: Tensor, grid_hw: Sequence[int],
                  stride: int) -> Tensor:
    """Ground-truth masks on a pseudo-mask grid.

    Cell ``(i, j)`` of a stride-``s`` grid of the padded batch input is input
    pixel ``(s * j + s // 2, s * i + s // 2)``, the convention of
    :func:`~mmboxseg.models.utils.strided_box_masks`.

    Args:
        masks (Tensor): ``[G, H, W]`` bool masks at the image's
            ``img_shape`` (after resizing and flipping, before padding).
        grid_hw (Sequence[int]): ``(h, w)`` of the pseudo-mask grid.
        stride (int): Input pixels per grid cell.

    Returns:
        Tensor: ``[G, h, w]`` bool, zero in the padding.
    """
    h, w = grid_hw
    sampled = masks[:, stride // 2::stride, stride // 2::stride][:, :h, :w]
    return F.pad(sampled, (0, w - sampled.shape[-1], 0, h - sampled.shape[-2]))


def pseudo_mask_ious(pseudo: Tensor, truth: Tensor) -> Tensor:
    """Per-instance IoU ``[G]`` of two ``[G, h, w]`` bool mask stacks (an
    instance empty in both scores 1)."""
    inter = (pseudo & truth).flatten(1).sum(1).float()
    union = (pseudo | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1),
                       torch.ones_like(inter))


@HOOKS.register_module()
class PseudoMaskQualityHook(Hook):
    """Logs how good a box-supervised method's pseudo masks are, during
    training, where the training images have ground-truth masks.

    A model that supports it sets ``last_pseudo_masks`` in every training
    step: one dict per image with

    - ``masks``: ``[G, h, w]`` bool pseudo masks on a stride-``stride`` grid
      of the padded batch input, one row per ground-truth instance;
    - ``valid``: ``[G]`` bool, which rows carry a pseudo mask (e.g.
      BoxTeacher's assigned instances);
    - ``eval_masks``: the instances' ground-truth masks (``BitmapMasks`` at
      ``img_shape``, packed by :class:`PackDetInputsWithEvalMasks` as
      ``gt_instances.eval_masks``), or None when the image has none;
    - ``stride``: input pixels per grid cell.

    The ground truth only meets the pseudo masks here, after the step, in
    ``torch.no_grad``: no loss can read it. Every ``interval`` iterations
    the hook puts ``train/pseudo_miou`` (mean IoU over the valid instances
    with a non-empty ground-truth mask) and ``train/pseudo_valid_frac`` in
    the message hub, from where :class:`~mmengine.hooks.LoggerHook` (which
    runs after this hook) writes them to the log and every visualizer
    backend.

    Args:
        interval (int): Log every ``interval`` training iterations.
            Defaults to 1.
    """
    priority = 'NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval

    @staticmethod
    def score(records: List[dict]) -> Optional[dict]:
        """``pseudo_miou`` (percent) and ``pseudo_valid_frac`` of one step's
        records; None when no valid instance has a ground-truth mask."""
        ious, num_rows, num_valid = [], 0, 0
        for rec in records:
            masks, valid = rec['masks'].bool(), rec['valid'].bool()
            num_rows += len(masks)
            num_valid += int(valid.sum())
            eval_masks = rec.get('eval_masks')
            if eval_masks is None or not valid.any():
                continue
            if len(eval_masks) != len(masks):
                raise ValueError(
                    f'PseudoMaskQualityHook: {len(masks)} pseudo masks but '
                    f'{len(eval_masks)} ground-truth masks in one image')
            truth = eval_masks.to_tensor(torch.bool, masks.device) if hasattr(
                eval_masks, 'to_tensor') else eval_masks.bool()
            truth = strided_truth(truth, masks.shape[-2:], rec['stride'])
            has_truth = truth.flatten(1).any(1)  # box-only rows have none
            keep = valid & has_truth
            if keep.any():
                ious.append(pseudo_mask_ious(masks[keep], truth[keep]))
        if not ious:
            return None
        return dict(
            pseudo_miou=100.0 * float(torch.cat(ious).mean()),
            pseudo_valid_frac=num_valid / max(num_rows, 1))

    @torch.no_grad()
    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'last_pseudo_masks'):
            raise TypeError(
                f'PseudoMaskQualityHook: {type(model).__name__} does not '
                'record pseudo masks (no `last_pseudo_masks`)')
        records = model.last_pseudo_masks
        stats = self.score(records) if records else None
        if stats is None:
            return
        for key, value in stats.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
