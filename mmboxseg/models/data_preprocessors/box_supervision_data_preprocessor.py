# Copyright (c) mmboxseg contributors. All rights reserved.
import logging
from typing import List, Optional, Union

import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures.bbox import get_box_tensor
from mmengine.logging import print_log
from torch import Tensor

from mmboxseg.models.utils import (color_similarity, downsample_uint8_images,
                                   rgb_to_lab, strided_box_masks,
                                   strided_image_masks)
from mmboxseg.registry import MODELS

SUPERVISION_MODES = ('box', 'mixed')


@MODELS.register_module()
class BoxSupDataPreprocessor(DetDataPreprocessor):
    """Data preprocessor that builds BoxInst's box supervision, batched.

    On top of :class:`mmdet.models.DetDataPreprocessor`, in training it
    adds to every data sample:

    - ``gt_instances.box_masks``: ``[G, H/s, W/s]`` bool box masks sampled at
      ``[s//2::s]`` of the padded batch (``s = mask_stride``);
    - ``color_similarity``: ``[k*k - 1, H/s, W/s]`` LAB colour similarity of
      each pixel to its dilated neighbours (BoxInst Eq. 7), zero where the
      neighbour is padding or a removed bottom row;
    - ``image_valid``: ``[H/s, W/s]`` bool, the pixels that are neither
      padding nor removed bottom rows.

    Differences from mmdet 3.3.0's ``BoxInstDataPreprocessor``, on purpose:

    - everything is computed for the whole batch in torch on the inputs'
      device (mmdet: skimage ``rgb2lab`` per image on the CPU and
      full-resolution box masks in a Python loop through numpy);
    - the colour input is AdelaiDet's: the *raw uint8* image zero-padded to
      the batch shape, average-pooled by ``s`` and truncated (mmdet
      de-normalises the padded float batch, so its padding is the mean
      colour);
    - the similarity is stored unthresholded and once per image; the mask
      head thresholds it and combines it with the box masks per instance
      (mmdet stores a thresholded copy per ground truth);
    - ``gt_instances.masks`` is never written, so instances that carry real
      masks keep them under ``supervision='mixed'``; under
      ``supervision='box'`` (default) loaded masks are *removed* from the
      training samples before anything else sees them, so that no loss,
      target or sampler (e.g. FCOS centre sampling, which uses the mask
      centroid whenever ``gt_instances.masks`` exists) can read them,
      whatever the pipeline loads;
    - bottom-row removal scales by the original image height as AdelaiDet
      (``int(n * resized_h / ori_h)``); mmdet uses the padded height.

    Args:
        supervision (str): ``'box'`` (default): ground-truth masks in the
            training samples (``gt_instances`` and ``ignored_instances``)
            are dropped, with one warning; ``pad_mask`` must be False.
            ``'mixed'`` (BoxInst Sec. 3.6): masks are kept and padded, so
            ``pad_mask`` must be True. Must equal the mask head's
            ``supervision``; the head refuses masks under ``'box'``.
        mask_stride (int): Stride of the mask predictions. Defaults to 4.
        pairwise_size (int): Neighbourhood size k. Defaults to 3.
        pairwise_dilation (int): Neighbourhood dilation. Defaults to 2.
        color_theta (float): Eq. 7's theta. Defaults to 2.0.
        bottom_pixels_removed (int): Rows at the bottom of each original
            image that carry no label (10 on COCO in AdelaiDet, 0 for data
            sets without that artefact). Defaults to 10.
        raw_channel_order (str): Channel order of the raw images handed to
            the preprocessor; mmcv/mmdet loaders give ``'bgr'``.
        **kwargs: :class:`DetDataPreprocessor` arguments.
    """

    def __init__(self,
                 *args,
                 supervision: str = 'box',
                 mask_stride: int = 4,
                 pairwise_size: int = 3,
                 pairwise_dilation: int = 2,
                 color_theta: float = 2.0,
                 bottom_pixels_removed: int = 10,
                 raw_channel_order: str = 'bgr',
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if supervision not in SUPERVISION_MODES:
            raise ValueError(f'{type(self).__name__}: supervision must be '
                             f'one of {SUPERVISION_MODES}, got '
                             f'{supervision!r}')
        if supervision == 'mixed' and not self.pad_mask:
            raise ValueError(
                f"{type(self).__name__}(supervision='mixed') needs "
                'pad_mask=True: the mask head samples the padded gt masks')
        if supervision == 'box' and self.pad_mask:
            raise ValueError(
                f"{type(self).__name__}(supervision='box') drops gt masks, "
                "so pad_mask=True has nothing to pad; set supervision='mixed' "
                'to train from the masks, or pad_mask=False')
        if raw_channel_order not in ('bgr', 'rgb'):
            raise ValueError("raw_channel_order must be 'bgr' or 'rgb', got "
                             f'{raw_channel_order!r}')
        if self.batch_augments is not None:
            raise ValueError(
                'BoxSupDataPreprocessor computes colour similarity from the '
                'raw images and cannot follow batch_augments that move '
                'pixels; apply such augmentation in the dataset pipeline')
        if pairwise_size % 2 != 1 or pairwise_size < 3:
            raise ValueError('pairwise_size must be an odd number >= 3, got '
                             f'{pairwise_size}')
        self.supervision = supervision
        self._warned_dropped_masks = False
        self.mask_stride = mask_stride
        self.pairwise_size = pairwise_size
        self.pairwise_dilation = pairwise_dilation
        self.color_theta = color_theta
        self.bottom_pixels_removed = bottom_pixels_removed
        self.raw_channel_order = raw_channel_order

    def forward(self, data: dict, training: bool = False) -> dict:
        raw_inputs = data['inputs']
        if training:
            self.drop_gt_masks(data.get('data_samples'))
        det_data = super().forward(data, training)
        if training:
            self.add_box_supervision(raw_inputs, det_data['inputs'],
                                     det_data['data_samples'])
        return det_data

    def drop_gt_masks(self, data_samples: Optional[list]) -> None:
        """Remove ground-truth masks from training samples under box
        supervision (in place, before padding and before any head).

        ``eval_masks`` (:class:`PackDetInputsWithEvalMasks`) stay: no head
        or loss reads them.
        """
        if self.supervision != 'box' or not data_samples:
            return
        dropped = False
        for sample in data_samples:
            for key in ('gt_instances', 'ignored_instances'):
                instances = sample.get(key)
                if instances is not None and 'masks' in instances:
                    del instances.masks
                    dropped = True
        if dropped and not self._warned_dropped_masks:
            self._warned_dropped_masks = True
            print_log(
                f"{type(self).__name__}(supervision='box'): the pipeline "
                'loaded gt masks; they are dropped before the heads, so no '
                'loss, target or sampler sees them. Set '
                "supervision='mixed' (here and in the mask head) to train "
                'from them.',
                logger='current',
                level=logging.WARNING)

    def add_box_supervision(self, raw_inputs: Union[Tensor, List[Tensor]],
                            inputs: Tensor, data_samples: list) -> None:
        """Attach ``box_masks`` and ``color_similarity`` to the samples."""
        batch_h, batch_w = inputs.shape[-2:]
        stride = self.mask_stride
        if batch_h % stride or batch_w % stride:
            raise ValueError(
                f'padded batch shape {(batch_h, batch_w)} is not divisible '
                f'by mask_stride={stride}; set pad_size_divisor to a '
                f'multiple of {stride}')
        out_size = (batch_h // stride, batch_w // stride)
        device = inputs.device

        if isinstance(raw_inputs, Tensor) and raw_inputs.dim() == 4:
            raw_inputs = list(raw_inputs)
        pooled = downsample_uint8_images(
            [img.to(device, non_blocking=True) for img in raw_inputs],
            (batch_h, batch_w), stride)
        if self.raw_channel_order == 'bgr':
            pooled = pooled.flip(1)
        lab = rgb_to_lab(pooled)
        img_shapes = torch.tensor([s.img_shape[:2] for s in data_samples],
                                  device=device)
        ori_heights = torch.tensor([s.ori_shape[0] for s in data_samples],
                                   device=device)
        image_masks = strided_image_masks(img_shapes, ori_heights, out_size,
                                          stride, self.bottom_pixels_removed)
        similarity = color_similarity(lab, image_masks, self.pairwise_size,
                                      self.pairwise_dilation, self.color_theta)

        boxes = [s.gt_instances.bboxes for s in data_samples]
        counts = [len(b) for b in boxes]
        all_boxes = torch.cat([get_box_tensor(b) for b in boxes]).to(device)
        box_masks = strided_box_masks(all_boxes, out_size, stride)
        for sample, sim, valid, masks in zip(data_samples, similarity,
                                             image_masks,
                                             box_masks.split(counts)):
            sample.gt_instances.box_masks = masks
            sample.color_similarity = sim
            sample.image_valid = valid

    def extra_repr(self) -> Optional[str]:
        return (f'mask_stride={self.mask_stride}, '
                f'pairwise_size={self.pairwise_size}, '
                f'pairwise_dilation={self.pairwise_dilation}, '
                f'bottom_pixels_removed={self.bottom_pixels_removed}')
