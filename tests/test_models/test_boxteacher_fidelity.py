# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxTeacher against the public code (hustvl/BoxTeacher): the merged
configs carry the release's values, and the teacher's input scale, its BN
mode, the mask-aware scores (training and test) and the mapping of teacher
masks back to the student follow ``condinst.py`` / ``boxteacher.py``."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmboxseg.engine.hooks import EMATeacherHook
from mmboxseg.models.utils.pseudo_mask_assignment import (
    release_mask_scores, resize_to_teacher_scale, teacher_mask_statistics,
    teacher_scale_size)
from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO

register_all_modules()


def cfg_of(name):
    return Config.fromfile(osp.join(REPO, 'configs/boxteacher', name))


COCO_1X = 'boxteacher_r50_fpn_ms-90k_coco.py'
COCO_3X = 'boxteacher_r50_fpn_ms-270k_coco.py'
TOY = 'boxteacher_r18_fpn_toy.py'


# -- independent re-derivations of the public code ----------------------------
def release_resize_size(h, w, max_size, min_size):
    """condinst.py resize_images, line by line."""
    scale = min_size / min(h, w)
    if h < w:
        newh, neww = min_size, scale * w
    else:
        newh, neww = scale * h, min_size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh = newh * scale
        neww = neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def adelaidet_aligned_bilinear(tensor, factor):
    """adet.utils.comm.aligned_bilinear."""
    h, w = tensor.size()[2:]
    tensor = F.pad(tensor, pad=(0, 1, 0, 1), mode='replicate')
    oh, ow = factor * h + 1, factor * w + 1
    tensor = F.interpolate(
        tensor, size=(oh, ow), mode='bilinear', align_corners=True)
    tensor = F.pad(
        tensor, pad=(factor // 2, 0, factor // 2, 0), mode='replicate')
    return tensor[:, :, :oh - 1, :ow - 1]


def release_postprocess_masks(probs,
                              teacher_hw,
                              student_hw,
                              padded_hw,
                              thr=0.5):
    """postprocess (mask part) + add_pseudo_bitmasks: full-resolution masks
    at the student size, padded and sampled at [2::4]; mask score mean."""
    full = adelaidet_aligned_bilinear(probs[None], 4)
    full = full[:, :, :teacher_hw[0], :teacher_hw[1]]
    full = F.interpolate(
        full, size=student_hw, mode='bilinear', align_corners=False)[0]
    binary = (full > thr).float()
    mask_score = (full * binary).sum([1, 2]) / (binary.sum([1, 2]) + 1e-6)
    padded = F.pad(
        full,
        (0, padded_hw[1] - student_hw[1], 0, padded_hw[0] - student_hw[0]))
    return padded[:, 2::4, 2::4], mask_score


# -- item 7: the teacher sees the test scale ---------------------------------
@pytest.mark.parametrize('h,w', [(640, 853), (800, 1199), (500, 1500),
                                 (1024, 683), (672, 672), (128, 96)])
def test_teacher_scale_size_is_resize_images(h, w):
    assert teacher_scale_size(h, w, (1333, 800)) == release_resize_size(
        h, w, 1333, 800)
    assert teacher_scale_size(h, w, (128, 128)) == release_resize_size(
        h, w, 128, 128)


def test_resize_to_teacher_scale_pads_with_zeros():
    inputs = torch.zeros(2, 3, 64, 96)
    inputs[0, :, :40, :60] = 1.0
    inputs[1, :, :64, :96] = 2.0
    batch, sizes = resize_to_teacher_scale(inputs, [(40, 60), (64, 96)],
                                           (100, 50), 32)
    assert sizes == [(50, 75), (50, 75)]
    assert batch.shape == (2, 3, 64, 96)
    torch.testing.assert_close(batch[0, :, :50, :75], torch.ones(3, 50, 75))
    assert batch[0, :, 50:].abs().sum() == 0 and batch[1, :, :, 75:].sum() == 0


def test_configs_set_the_teacher_scale():
    assert tuple(cfg_of(COCO_1X).model.teacher_scale) == (1333, 800)
    assert tuple(cfg_of(COCO_3X).model.teacher_scale) == (1333, 800)
    assert tuple(cfg_of(TOY).model.teacher_scale) == (128, 128)
    assert tuple(
        cfg_of('boxteacher_r50_fpn_ms-24k_cityscapes.py').model.teacher_scale
    ) == (2048, 1024)


def toy_model(**model_kwargs):
    cfg = cfg_of(TOY)
    cfg.model.update(model_kwargs)
    cfg.model.pseudo_cfg.iou_thr = 0.0
    model = MODELS.build(cfg.model)
    EMATeacherHook(buffers='keep').update(model, 0.0, 'copy')
    with torch.no_grad():
        # the teacher fires everywhere
        model.teacher.bbox_head.conv_cls.bias.fill_(5.0)
        model.teacher.bbox_head.conv_centerness.bias.fill_(5.0)
    model.teacher.test_cfg.score_thr = 0.0
    model.teacher.bbox_head.test_cfg.score_thr = 0.0
    return model


def student_samples(n, size=(32, 48), pad=(32, 64)):
    samples = []
    for _ in range(n):
        sample = DetDataSample(
            metainfo=dict(
                img_shape=size, ori_shape=size, batch_input_shape=pad))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[2., 2., 30., 28.]]),
            labels=torch.zeros(1, dtype=torch.long))
        samples.append(sample)
    return samples


def test_teacher_runs_at_the_test_scale_and_maps_back():
    model = toy_model(teacher_scale=(96, 64))
    seen = []
    model.teacher.backbone.register_forward_hook(
        lambda m, i, o: seen.append(tuple(i[0].shape)))
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 32, 64)
    out = model.teacher_predictions(inputs, student_samples(2), (8, 16))
    # 32 x 48 -> short side 64, long 96 (<= 96): 64 x 96, padded to 64 x 96
    assert seen == [(2, 3, 64, 96)]
    for result in out:
        assert result.grid_probs.shape[1:] == (8, 16)
        # boxes are in the student image
        assert result.bboxes[:, 0::2].max() <= 48
        assert result.bboxes[:, 1::2].max() <= 32
        assert len(result) > 0
    # None: the student's geometry, as before
    model = toy_model(teacher_scale=None)
    seen = []
    model.teacher.backbone.register_forward_hook(
        lambda m, i, o: seen.append(tuple(i[0].shape)))
    model.teacher_predictions(inputs, student_samples(2), (8, 16))
    assert seen == [(2, 3, 32, 64)]


def test_teacher_masks_mapped_as_the_release():
    torch.manual_seed(0)
    # teacher image 50 x 75 padded to 64 x 96 (stride-4 grid 16 x 24);
    # student image 30 x 45 in a 32 x 64 batch (grid 8 x 16)
    probs = torch.rand(5, 16, 24)
    probs[:2] = probs[:2] * 0.4  # two masks without positive pixels
    grid, mean, _ = teacher_mask_statistics(
        probs, (50, 75), (30, 45), (8, 16), chunk=2)
    want_grid, want_mean = release_postprocess_masks(probs, (50, 75), (30, 45),
                                                     (32, 64))
    torch.testing.assert_close(grid, want_grid)
    torch.testing.assert_close(mean, want_mean)
    # same size: the stride-4 map itself (aligned_bilinear then [2::4])
    grid, _, _ = teacher_mask_statistics(probs, (64, 96), (64, 96), (16, 24))
    torch.testing.assert_close(grid, probs)


def test_paper_box_mean_against_full_resolution_masks():
    torch.manual_seed(1)
    probs = torch.rand(3, 8, 8)
    boxes = torch.tensor([[1.5, 2.0, 20.2, 17.9], [0., 0., 31., 31.]])
    _, _, box_mean = teacher_mask_statistics(
        probs, (32, 32), (32, 32), (8, 8), gt_boxes=boxes)
    full = adelaidet_aligned_bilinear(probs[None], 4)[0]
    for g, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        inside = torch.zeros(32, 32)
        inside[int(y1):int(y2 + 1), int(x1):int(x2 + 1)] = 1
        pos = (full > 0.5).float() * inside
        want = (full * pos).sum([1, 2]) / (pos.sum([1, 2]) + 1e-6)
        torch.testing.assert_close(box_mean[:, g], want)


# -- item 8: evaluation re-scores with the mask-aware score ----------------
def test_predict_scores_are_the_release_postprocess_scores():
    cfg = cfg_of(TOY)
    assert cfg.model.mask_head.test_score == 'mask_aware'
    assert cfg_of(COCO_1X).model.mask_head.test_score == 'mask_aware'
    model = MODELS.build(cfg.model)
    head = model.teacher.mask_head
    # constant logits: every pixel has probability sigmoid(l)
    logits = torch.stack([
        torch.full((4, 4), 1.5),
        torch.full((4, 4), -1.0),
        torch.full((4, 4), 0.3)
    ])
    results = InstanceData(
        bboxes=torch.tensor([[0., 0., 8., 8.]] * 3),
        scores=torch.tensor([0.64, 0.9, 0.25]),
        labels=torch.zeros(3, dtype=torch.long))
    meta = dict(img_shape=(16, 16), ori_shape=(32, 32), scale_factor=(.5, .5))
    out = head.predict_by_feat([logits], [results], [meta], rescale=True)[0]
    sig = torch.sigmoid(torch.tensor([1.5, -1.0, 0.3]))
    # release: scores = sqrt(s * mbar), s = sqrt(cls * ctr) (AdelaiDet FCOS)
    want = [
        math.sqrt(math.sqrt(0.64) * sig[0]), 0.0,
        math.sqrt(math.sqrt(0.25) * sig[2])
    ]
    assert out.scores.tolist() == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert out.masks.shape == (3, 32, 32)
    assert out.masks[0].all() and not out.masks[1].any()
    # mmdet's cls * ctr on request
    head.test_score = 'detection'
    results.scores = torch.tensor([0.64, 0.9, 0.25])
    out = head.predict_by_feat([logits], [results], [meta], rescale=True)[0]
    assert out.scores.tolist() == pytest.approx([0.64, 0.9, 0.25])


def test_predict_path_of_the_detector_rescores():
    model = toy_model()
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    meta = DetDataSample(
        metainfo=dict(
            img_shape=(64, 64),
            ori_shape=(64, 64),
            scale_factor=(1.0, 1.0),
            batch_input_shape=(64, 64)))
    with torch.no_grad():
        got = model.predict(x, [meta.clone()])[0].pred_instances
        model.teacher.mask_head.test_score = 'detection'
        det = model.predict(x, [meta.clone()])[0].pred_instances
    assert len(got) == len(det) > 0
    # the same detections, re-scored: sqrt(sqrt(cls*ctr) * mbar) <= 1
    assert not torch.allclose(got.scores, det.scores)
    torch.testing.assert_close(got.bboxes, det.bboxes)


# -- item 9: the code's score mode, ranking and weight ---------------------
def test_score_mode_defaults_to_the_code():
    for name in (COCO_1X, COCO_3X, TOY):
        pseudo = cfg_of(name).model.pseudo_cfg
        assert pseudo.score_mode == 'code'
        assert pseudo.score_thr == 0.0 and pseudo.iou_thr == 0.5
        assert pseudo.mask_thr == 0.5


def test_release_scores_by_hand():
    c = torch.tensor([0.81, 0.36])
    mbar = torch.tensor([0.64, 0.9])
    weight, rank = release_mask_scores(c, mbar)
    assert weight.tolist() == pytest.approx(
        [0.81**0.25 * 0.8, 0.36**0.25 * 0.9**0.5])
    assert rank.tolist() == pytest.approx(
        [math.sqrt(0.81 * 0.64), math.sqrt(0.36 * 0.9)])


def test_alg1_ranks_by_the_code_score_and_weighs_by_its_mask_score():
    model = toy_model()
    # two detections of the one gt: A has the higher detection score, B the
    # higher sqrt(c * mbar): c_A * mbar_A = 0.9 * 0.5 < c_B * mbar_B = 0.8 *
    # 0.95
    result = InstanceData(
        bboxes=torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 9.]]),
        scores=torch.tensor([0.81, 0.64]),  # mmdet cls * ctr
        mean_probs=torch.tensor([0.5, 0.95]))
    gt = torch.tensor([[0., 0., 10., 10.]])
    assigned, weights = model.assign_and_score(result, gt)
    assert assigned.tolist() == [1]
    assert weights.tolist() == pytest.approx([0.8**0.25 * 0.95**0.5])
    # the paper's Alg. 1 orders by the detection score
    model.pseudo_cfg['score_mode'] = 'paper'
    result.box_mean_probs = torch.tensor([[0.5], [0.95]])
    assigned, weights = model.assign_and_score(result, gt)
    assert assigned.tolist() == [0]
    assert weights.tolist() == pytest.approx([math.sqrt(0.9 * 0.5)])


# -- item 10: colour augmentation by schedule -------------------------------
def student_transforms(cfg):
    last = cfg.train_dataloader.dataset.pipeline[-1]
    assert last.type == 'MultiBranch'
    return [t.type for t in last.student]


def test_1x_has_no_colour_augmentation_3x_has_strongv2():
    assert student_transforms(cfg_of(COCO_1X)) == ['PackDetInputs']
    assert student_transforms(cfg_of(TOY)) == ['PackDetInputs']
    assert student_transforms(cfg_of(COCO_3X)) == [
        'ColorJitter', 'RandomGrayscale', 'GaussianBlur', 'PackDetInputs'
    ]
    assert student_transforms(
        cfg_of('boxteacher_r101_fpn_ms-270k_coco.py'))[2] == 'GaussianBlur'
    # the released 1x yaml as written (config.py's AUG_TYPE "strong")
    strong = cfg_of('boxteacher_r50_fpn_ms-90k_coco_strong-aug.py')
    assert student_transforms(strong) == [
        'ColorJitter', 'RandomGrayscale', 'PackDetInputs'
    ]
    jitter = strong.train_dataloader.dataset.pipeline[-1].student[0]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue,
            jitter.prob) == (0.4, 0.4, 0.4, 0.1, 0.8)
    assert cfg_of(COCO_1X).train_cfg.max_iters == 90000
    assert cfg_of(COCO_3X).train_cfg.max_iters == 270000


# -- item 11: teacher in train mode, EMA on parameters ----------------------
def test_ema_hook_config_is_the_release():
    for name in (COCO_1X, COCO_3X):
        cfg = cfg_of(name)
        hook, = cfg.custom_hooks
        assert hook.type == 'EMATeacherHook'
        assert (hook.momentum, hook.ramp, hook.start_iter, hook.buffers,
                hook['update']) == (0.999, True, 0, 'keep', 'before_step')
        assert cfg.model.teacher_mode == 'train'
    assert cfg_of(TOY).custom_hooks[0].buffers == 'keep'


def test_teacher_uses_batch_statistics_and_keeps_its_own():
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 32, 64)
    outs = {}
    for mode in ('train', 'eval'):
        model = toy_model(teacher_mode=mode, teacher_scale=None)
        bns = [
            m for m in model.teacher.mask_head.mask_feature_head.modules()
            if isinstance(m, torch.nn.BatchNorm2d)
        ]
        assert bns
        grids = []
        for shift in (0.0, 50.0):
            for bn in bns:
                bn.running_mean.fill_(shift)
                bn.running_var.fill_(1.0)
            out = model.teacher_predictions(inputs, student_samples(2),
                                            (8, 16))
            grids.append(torch.cat([r.grid_probs.flatten() for r in out]))
            assert not model.teacher.training  # eval again afterwards
            if mode == 'train':
                # its own running statistics moved (BN momentum 0.1)
                assert bns[0].running_mean.abs().max() != shift
        outs[mode] = grids
    # batch statistics: the running statistics do not matter
    torch.testing.assert_close(outs['train'][0], outs['train'][1])
    assert outs['eval'][0].shape != outs['eval'][1].shape or not \
        torch.allclose(outs['eval'][0], outs['eval'][1])


def test_keep_policy_averages_parameters_only():
    model = toy_model()
    hook = EMATeacherHook(**{
        k: v
        for k, v in cfg_of(COCO_1X).custom_hooks[0].items() if k != 'type'
    })
    bn = next(m for m in model.teacher.mask_head.mask_feature_head.modules()
              if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(3.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before_w = model.teacher.backbone.conv1.weight.clone()
    hook.update(model, 0.5)
    assert torch.equal(bn.running_mean, torch.full_like(bn.running_mean, 3.))
    torch.testing.assert_close(
        model.teacher.backbone.conv1.weight,
        0.5 * before_w + 0.5 * model.backbone.conv1.weight)


# -- the other release values ------------------------------------------------
def test_loss_hyper_parameters():
    """config.py: MASK_WEIGHT 0.5, MASK_AFFINITY_WEIGHT 0.1 / THRESH 0.5,
    WARMUP_ITERS 10000, FIX_REDUCTION, USE_TEACHER_INFERENCE."""
    for name in (COCO_1X, COCO_3X):
        model = cfg_of(name).model
        head = model.mask_head
        assert head.loss_pseudo_mask.loss_weight == 0.5
        assert head.loss_pseudo_affinity.loss_weight == 0.1
        assert head.loss_pseudo_affinity.affinity_thresh == 0.5
        assert (head.loss_pseudo_affinity.kernel_size,
                head.loss_pseudo_affinity.dilation) == (3, 2)
        assert head.pseudo_warmup_iters == 10000
        assert head.fix_reduction is True
        assert model.inference_with == 'teacher'
