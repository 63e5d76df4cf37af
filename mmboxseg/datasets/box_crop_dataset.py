# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List

import numpy as np
from mmdet.evaluation.functional import bbox_overlaps
from mmengine.logging import print_log

from mmboxseg.registry import DATASETS
from .box_coco_dataset import AnnotationFileError, BoxCocoDataset


@DATASETS.register_module()
class BoxCropDataset(BoxCocoDataset):
    """One sample per ground-truth box of a COCO file: BoxCaseg's
    box-supervised training samples and its evaluation crops.

    The COCO file is parsed and checked by :class:`BoxCocoDataset` (bad
    boxes are clipped or skipped and counted; crowd boxes are never
    samples). Each sample carries ``crop_box`` (xyxy), ``bbox_label``,
    ``ann_index`` (the box's index among its image's kept instances),
    ``source='box'`` and ``overlapped``: whether the box has an IoU above
    ``overlap_iou_thr`` with another box of its image, used by
    :class:`BoxSalientRatioSampler` to drop heavily overlapping boxes (the
    release's COCO list of boxes with IoU > 0.5). Crops are cut by
    :class:`BoxJitterCrop`.

    Box-only by default: the instance mask is copied into a sample only
    with ``with_mask=True`` (evaluation crops), and then every box must have
    one.

    Args:
        with_mask (bool): Attach the ground-truth mask (``gt_mask``) for
            evaluation. Defaults to False.
        overlap_iou_thr (float): Defaults to 0.5.
        **kwargs: :class:`BoxCocoDataset` arguments. ``filter_cfg`` accepts
            ``min_size``: boxes narrower or lower than this are no samples.
    """

    def __init__(self,
                 *args,
                 with_mask: bool = False,
                 overlap_iou_thr: float = 0.5,
                 **kwargs) -> None:
        self.with_mask = with_mask
        self.overlap_iou_thr = overlap_iou_thr
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        crops = []
        for info in super().load_data_list():
            instances = [
                ins for ins in info['instances'] if not ins['ignore_flag']
            ]
            if not instances:
                continue
            boxes = np.array([ins['bbox'] for ins in instances], np.float64)
            iou = bbox_overlaps(boxes, boxes)
            np.fill_diagonal(iou, 0)
            overlapped = iou.max(axis=1) > self.overlap_iou_thr
            for k, ins in enumerate(instances):
                crop = dict(
                    img_path=info['img_path'],
                    img_id=info['img_id'],
                    height=info['height'],
                    width=info['width'],
                    crop_box=[float(v) for v in ins['bbox']],
                    bbox_label=ins['bbox_label'],
                    ann_index=k,
                    overlapped=bool(overlapped[k]),
                    source='box')
                if self.with_mask:
                    mask = ins['mask']
                    if isinstance(mask, dict) and mask.get('counts') == [
                            info['height'] * info['width']
                    ]:
                        raise AnnotationFileError(
                            f'{self.ann_file}: field `segmentation`: box {k}'
                            f' of image id {info["img_id"]} has no mask, but '
                            'with_mask=True (evaluation crops) needs one')
                    crop['gt_mask'] = mask
                crops.append(crop)
        return crops

    def filter_data(self) -> List[dict]:
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        min_size = self.filter_cfg.get('min_size', 0)
        kept = [
            c for c in self.data_list
            if min(c['crop_box'][2] - c['crop_box'][0], c['crop_box'][3] -
                   c['crop_box'][1]) >= min_size
        ]
        if len(kept) < len(self.data_list):
            dropped = len(self.data_list) - len(kept)
            print_log(
                f'{type(self).__name__}: dropped {dropped} boxes smaller '
                f'than min_size={min_size}',
                logger='current')
        return kept

    def get_cat_ids(self, idx: int) -> List[int]:
        """The category of the sample's box (a crop holds one box; mmdet's
        version reads ``instances``, which crops do not carry)."""
        return [int(self.get_data_info(idx)['bbox_label'])]

    def num_overlapped(self) -> int:
        """How many samples are flagged ``overlapped``."""
        return sum(
            bool(self.get_data_info(i)['overlapped'])
            for i in range(len(self)))
