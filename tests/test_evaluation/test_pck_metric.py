# Copyright (c) mmboxseg contributors. All rights reserved.
"""PCK@alpha on hand-built keypoints, both normalisations."""
import numpy as np
import pytest
import torch

from mmboxseg.evaluation.metrics import PCKMetric, pck


def sample(pred,
           gt,
           valid,
           box=(10, 10, 60, 30),
           shape=(100, 200),
           scale=(1.0, 1.0)):
    return dict(
        pred_keypoints=torch.tensor(pred, dtype=torch.float32) *
        torch.tensor(scale),
        trg_keypoints_ori=np.asarray(gt, np.float32),
        keypoint_valid=np.asarray(valid, bool),
        trg_bbox_ori=None if box is None else np.asarray(box, np.float32),
        trg_ori_shape=shape,
        trg_scale=np.asarray(scale, np.float32),
        img_id=0,
        trg_img_path='b.png')


def test_pck_by_hand():
    gt = np.array([[0, 0], [10, 0], [0, 10], [5, 5]], float)
    pred = gt + np.array([[0, 4], [3, 4], [0, 6], [100, 0]])  # 4, 5, 6, 100
    valid = np.array([True, True, True, True])
    assert pck(pred, gt, valid, size=50, alpha=0.1) == 0.5  # <= 5
    assert pck(pred, gt, valid, size=60, alpha=0.1) == 0.75  # <= 6
    valid[3] = False
    assert pck(pred, gt, valid, size=50, alpha=0.1) == 2 / 3
    assert np.isnan(pck(pred, gt, np.zeros(4, bool), 50, 0.1))


def test_metric_both_normalisations_and_rescaling():
    metric = PCKMetric(alphas=(0.1, ), normalisations=('bbox', 'image'))
    # box 50 x 20 -> 5 px; image 100 x 200 -> 20 px
    gt = [[20, 20], [40, 20], [30, 25]]
    pred = [[24, 20], [40, 32], [30, 25]]  # errors 4, 12, 0
    # predictions come in the resized target (here scaled by 0.5)
    metric.process({}, [sample(pred, gt, [1, 1, 1], scale=(0.5, 0.5))])
    # a second pair, all within 5 px
    metric.process({}, [sample(gt, gt, [1, 1, 0])])
    out = metric.compute_metrics(metric.results)
    assert out['PCK@0.1_bbox'] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert out['PCK@0.1_image'] == pytest.approx(100 * (1 + 1) / 2)


def test_metric_errors():
    with pytest.raises(ValueError, match='normalisations'):
        PCKMetric(normalisations=('diag', ))
    metric = PCKMetric()
    with pytest.raises(ValueError, match='bboxB'):
        metric.process({}, [sample([[0, 0]], [[0, 0]], [1], box=None)])
    metric = PCKMetric(normalisations=('image', ))
    metric.process({}, [sample([[0, 0]], [[0, 0]], [1], box=None)])
    with pytest.raises(KeyError, match='pred_keypoints'):
        metric.process({}, [dict(img_id=0)])
