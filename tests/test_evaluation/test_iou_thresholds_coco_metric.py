# Copyright (c) mmboxseg contributors. All rights reserved.
import json

import numpy as np
import pytest
import torch

from mmboxseg.evaluation import IoUThresholdsCocoMetric


def square_mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def write_gt(path):
    from pycocotools import mask as mask_utils
    anns = []
    for i in range(4):
        m = np.asfortranarray(
            square_mask(100, 100, 10, 10 + 20 * i, 50, 30 + 20 * i))
        rle = mask_utils.encode(m)
        rle['counts'] = rle['counts'].decode()
        anns.append(
            dict(
                id=i + 1,
                image_id=1,
                category_id=1,
                bbox=[10, 10 + 20 * i, 40, 20],
                area=800,
                iscrowd=0,
                segmentation=rle))
    path.write_text(
        json.dumps(
            dict(
                images=[dict(id=1, file_name='a.png', width=100, height=100)],
                annotations=anns,
                categories=[dict(id=1, name='thing')])))


def prediction(x_shift):
    """Four predictions, each the gt square shifted right by x_shift px:
    mask IoU = (40 - s) / (40 + s)."""
    boxes, masks = [], []
    for i in range(4):
        y0 = 10 + 20 * i
        boxes.append([10 + x_shift, y0, 50 + x_shift, y0 + 20])
        masks.append(
            square_mask(100, 100, 10 + x_shift, y0, 50 + x_shift, y0 + 20))
    return dict(
        img_id=1,
        ori_shape=(100, 100),
        pred_instances=dict(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            scores=torch.tensor([0.9, 0.8, 0.7, 0.6]),
            labels=torch.zeros(4, dtype=torch.long),
            masks=torch.from_numpy(np.stack(masks)).bool()))


@pytest.mark.parametrize(
    'shift,expected',
    [
        (0, dict(AP25=1.0, AP50=1.0, AP70=1.0, AP75=1.0, mAP=1.0)),
        # IoU = 30 / 50 = 0.6: found at 0.25 and 0.5, missed at 0.7 and above;
        # mAP: matched at 0.5, 0.55 and 0.6 (COCO matches IoU >= t) -> 3 / 10
        (10, dict(AP25=1.0, AP50=1.0, AP70=0.0, AP75=0.0, mAP=0.3)),
        # IoU = 20 / 60 = 0.33: only AP25
        (20, dict(AP25=1.0, AP50=0.0, AP70=0.0, AP75=0.0, mAP=0.0)),
    ])
def test_ap_at_iou_thresholds(tmp_path, shift, expected):
    ann = tmp_path / 'gt.json'
    write_gt(ann)
    metric = IoUThresholdsCocoMetric(
        ann_file=str(ann), metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=('thing', ))
    metric.process({}, [prediction(shift)])
    results = metric.evaluate(size=1)
    for key, value in expected.items():
        for kind in ('bbox', 'segm'):
            # COCO's 101-point interpolated precision makes a perfect
            # detector score 1.0 exactly; mAP averages the 10 COCO
            # thresholds only (0.25 is not among them)
            assert results[f'coco/{kind}_{key}'] == pytest.approx(
                value, abs=1e-3), (kind, key, results)


def test_rejects_iou_thrs_and_bad_thresholds(tmp_path):
    with pytest.raises(TypeError, match='ap_iou_thrs'):
        IoUThresholdsCocoMetric(iou_thrs=[0.5])
    with pytest.raises(ValueError, match='ap_iou_thrs'):
        IoUThresholdsCocoMetric(ap_iou_thrs=(1.5, ))


def test_box_baseline_masks_are_box_centres():
    from ..conftest import load_tool
    tool = load_tool('tools/analysis_tools/eval_box_baseline.py',
                     'eval_box_baseline')
    masks = tool.box_masks(
        np.array([[1.0, 2.0, 4.0, 3.0], [0.4, 0.0, 1.6, 1.4]]), 5, 6)
    expected0 = np.zeros((5, 6), bool)
    expected0[2:3, 1:4] = True
    expected1 = np.zeros((5, 6), bool)
    expected1[0:1, 0:2] = True  # centres 0.5 and 1.5 lie in [0.4, 1.6)
    assert np.array_equal(masks[0], expected0)
    assert np.array_equal(masks[1], expected1)
