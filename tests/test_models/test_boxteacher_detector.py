# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxTeacher detector and its two-view preprocessor on hand-built
teacher outputs and images."""
import math
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmboxseg.engine.hooks import EMATeacherHook
from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO

register_all_modules()
CFG = osp.join(REPO, 'configs/boxteacher/boxteacher_r18_fpn_toy.py')


def build(**pseudo):
    cfg = Config.fromfile(CFG)
    cfg.model.pseudo_cfg.update(pseudo)
    return MODELS.build(cfg.model)


def student_sample(boxes, size=(16, 16)):
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64)))
    gt = InstanceData()
    gt.bboxes = torch.tensor(boxes, dtype=torch.float32)
    gt.labels = torch.zeros(len(boxes), dtype=torch.long)
    gt.box_masks = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        gt.box_masks[i,
                     int(y1) // 4:int(y2) // 4,
                     int(x1) // 4:int(x2) // 4] = 1
    sample.gt_instances = gt
    return sample


def fake_teacher(result, probs, mean=None, box_mean=None):
    """A stand-in for ``teacher_predictions``: one image's detections."""
    out = InstanceData(
        bboxes=result.bboxes, scores=result.scores, grid_probs=probs)
    out.mean_probs = mean if mean is not None else torch.zeros(len(result))
    if box_mean is not None:
        out.box_mean_probs = box_mean
    return lambda i, s, g: [out]


def test_pseudo_masks_are_assigned_clipped_and_scored(monkeypatch):
    model = build()
    result = InstanceData()
    # prediction 0 matches gt 0 (same box) and spills out of it
    result.bboxes = torch.tensor([[0., 0., 32., 32.], [40., 40., 60., 60.]])
    result.scores = torch.tensor([0.64, 0.81])
    probs = torch.zeros(2, 16, 16)
    probs[0, 2:10, 2:10] = 0.9  # 4 rows/cols outside the 8x8 box mask
    probs[0, 0, 0] = 0.6
    probs[1, 10:15, 10:15] = 0.7
    mean = torch.tensor([0.85, 0.7])  # mbar at the student's resolution
    monkeypatch.setattr(model, 'teacher_predictions',
                        fake_teacher(result, probs, mean))
    sample = student_sample([[0, 0, 32, 32], [0, 40, 16, 60]])
    stats = model.add_pseudo_masks(torch.zeros(1, 3, 64, 64), [None], [sample])
    gt = sample.gt_instances
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[2:8, 2:8] = True
    want[0, 0] = True
    assert torch.equal(gt.pseudo_masks[0], want)
    assert not gt.pseudo_masks[1].any()  # gt 1 overlaps nothing
    # the public code's weight (default): sqrt(sqrt(c) * mbar), c =
    # sqrt(0.64)
    assert gt.pseudo_scores[0].item() == pytest.approx(
        math.sqrt(math.sqrt(0.8) * 0.85), rel=1e-5)
    assert gt.pseudo_scores[1].item() == 0.0
    assert stats['pseudo_assigned'].item() == 0.5
    # what PseudoMaskQualityHook reads after the step
    rec, = model.last_pseudo_masks
    assert rec['masks'] is gt.pseudo_masks and rec['stride'] == 4
    assert rec['valid'].tolist() == [True, False]
    assert rec['eval_masks'] is None  # a box-only sample
    # Eq. 1 of the paper: sqrt(c * mbar inside the assigned gt box)
    model = build(score_mode='paper')
    box_mean = torch.tensor([[0.9, 0.0], [0.0, 0.0]])
    monkeypatch.setattr(model, 'teacher_predictions',
                        fake_teacher(result, probs, mean, box_mean))
    sample = student_sample([[0, 0, 32, 32], [0, 40, 16, 60]])
    model.add_pseudo_masks(torch.zeros(1, 3, 64, 64), [None], [sample])
    assert sample.gt_instances.pseudo_scores[0].item() == pytest.approx(
        math.sqrt(0.8 * 0.9), rel=1e-5)


def test_eval_masks_are_scored_by_the_hook_and_change_nothing(monkeypatch):
    import numpy as np
    from mmdet.structures.mask import BitmapMasks

    from mmboxseg.engine.hooks import PseudoMaskQualityHook
    result = InstanceData()
    result.bboxes = torch.tensor([[0., 0., 32., 32.]])
    result.scores = torch.tensor([0.64])
    probs = torch.zeros(1, 16, 16)
    probs[0, 2:10, 2:10] = 0.9
    outs = []
    for fill in (0, 1):
        model = build()
        monkeypatch.setattr(model, 'teacher_predictions',
                            fake_teacher(result, probs))
        sample = student_sample([[0, 0, 32, 32]])
        truth = np.full((1, 64, 64), fill, np.uint8)
        truth[0, :32, :32] = 1  # the box, 8 x 8 cells on the grid
        sample.gt_instances.eval_masks = BitmapMasks(truth, 64, 64)
        stats = model.add_pseudo_masks(
            torch.zeros(1, 3, 64, 64), [None], [sample])
        outs.append((sample.gt_instances.pseudo_masks.clone(),
                     sample.gt_instances.pseudo_scores.clone(), stats,
                     PseudoMaskQualityHook.score(model.last_pseudo_masks)))
    # the evaluation masks change neither the pseudo masks nor the scores
    assert outs[0][0].equal(outs[1][0]) and outs[0][1].equal(outs[1][1])
    assert outs[0][2]['pseudo_assigned'] == outs[1][2]['pseudo_assigned']
    # pseudo: the 6 x 6 cells 2..7 inside the box; truth: 8 x 8 cells
    assert outs[0][3]['pseudo_miou'] == pytest.approx(100 * 36 / 64)
    # an all-foreground truth: 36 of the 16 x 16 grid
    assert outs[1][3]['pseudo_miou'] == pytest.approx(100 * 36 / 256)


def test_no_teacher_detections_and_bad_config():
    model = build()
    sample = student_sample([[0, 0, 32, 32]])
    model.teacher_predictions = fake_teacher(
        InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0)),
        torch.zeros(0, 16, 16))
    model.add_pseudo_masks(torch.zeros(1, 3, 64, 64), [None], [sample])
    assert sample.gt_instances.pseudo_masks.shape == (1, 16, 16)
    assert not sample.gt_instances.pseudo_masks.any()
    assert sample.gt_instances.pseudo_scores.tolist() == [0.0]
    with pytest.raises(KeyError, match='iou_th'):
        build(iou_th=0.5)
    with pytest.raises(ValueError, match='score_mode'):
        build(score_mode='Code')
    with pytest.raises(ValueError, match='iou_thr'):
        build(iou_thr=50)
    cfg = Config.fromfile(CFG)
    cfg.model.inference_with = 'ema'
    with pytest.raises(ValueError, match='inference_with'):
        MODELS.build(cfg.model)


def test_loss_needs_the_ema_hook_and_inference_uses_the_teacher():
    model = build()
    # compare the detection scores (the mask-aware re-scoring is pinned in
    # test_boxteacher_fidelity.py)
    model.mask_head.test_score = 'detection'
    model.teacher.mask_head.test_score = 'detection'
    model.eval()
    with pytest.raises(RuntimeError, match='EMATeacherHook'):
        model.loss(torch.zeros(1, 3, 64, 64), [student_sample([[0, 0, 8, 8]])])
    EMATeacherHook().update(model, 0.0, 'copy')
    assert int(model.ema_updates) == 1
    x = torch.rand(1, 3, 64, 64)
    meta = DetDataSample(
        metainfo=dict(
            img_shape=(64, 64),
            ori_shape=(64, 64),
            scale_factor=(1.0, 1.0),
            batch_input_shape=(64, 64)))
    with torch.no_grad():
        # the teacher fires everywhere
        model.teacher.bbox_head.conv_cls.bias.fill_(5.0)
        model.teacher.bbox_head.conv_centerness.bias.fill_(5.0)
        model.test_cfg.score_thr = 0.0
        model.teacher.test_cfg.score_thr = 0.0
        by_teacher = model.predict(x, [meta.clone()])[0].pred_instances
        model.inference_with = 'student'
        by_student = model.predict(x, [meta.clone()])[0].pred_instances
    assert by_teacher.scores.min() > 0.5 > by_student.scores.max()
    # the teacher stays in eval mode when the model trains
    model.train()
    assert model.training and not model.teacher.training


def two_view_batch(teacher_img, student_img, boxes):
    data = dict(inputs={}, data_samples={})
    for view, img in (('teacher', teacher_img), ('student', student_img)):
        sample = DetDataSample(
            metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            labels=torch.zeros(len(boxes), dtype=torch.long))
        data['inputs'][view] = [img]
        data['data_samples'][view] = [sample]
    return data


def test_two_view_preprocessor_uses_the_teacher_colours():
    cfg = Config.fromfile(CFG)
    pre = MODELS.build(cfg.model.data_preprocessor)
    single = MODELS.build(
        dict(cfg.model.data_preprocessor, type='BoxSupDataPreprocessor'))
    torch.manual_seed(0)
    teacher_img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    student_img = 255 - teacher_img
    boxes = [[4, 4, 20, 28]]
    out = pre(two_view_batch(teacher_img, student_img, boxes), True)
    ref = single(
        dict(
            inputs=[teacher_img],
            data_samples=two_view_batch(teacher_img, student_img,
                                        boxes)['data_samples']['teacher']),
        True)
    ref_sample = ref['data_samples'][0]
    for view in ('teacher', 'student'):
        sample = out['data_samples'][view][0]
        torch.testing.assert_close(sample.color_similarity,
                                   ref_sample.color_similarity)
        assert torch.equal(sample.gt_instances.box_masks,
                           ref_sample.gt_instances.box_masks)
    torch.testing.assert_close(out['inputs']['teacher'], ref['inputs'])
    assert not torch.allclose(out['inputs']['student'], ref['inputs'])
    # geometry must be shared
    bad = two_view_batch(teacher_img, student_img, boxes)
    bad['data_samples']['student'][0].gt_instances.bboxes += 1
    with pytest.raises(ValueError, match='before MultiBranch'):
        pre(bad, True)
    wide = torch.cat([student_img, student_img[:, :, :16]], dim=2)
    bad = two_view_batch(teacher_img, wide, boxes)
    with pytest.raises(ValueError, match='before MultiBranch'):
        pre(bad, True)
    wrong = two_view_batch(teacher_img, student_img, boxes)
    wrong['inputs']['weak'] = wrong['inputs'].pop('teacher')
    with pytest.raises(KeyError, match='MultiBranch'):
        pre(wrong, True)
