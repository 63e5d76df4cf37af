# Copyright (c) mmboxseg contributors. All rights reserved.
"""DiscoBox on SOLOv2: box targets against mmdet's assignment, the MIL loss
by hand, gates, box-only, teacher use, pseudo masks for
PseudoMaskQualityHook."""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmboxseg.models.losses import BoxProjectionLoss
from mmboxseg.models.utils import (ObjectMemoryBank, masks_to_boxes,
                                   strided_box_masks)
from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO

register_all_modules()
TOY = osp.join(REPO, 'configs/discobox/discobox_solov2_r18_fpn_toy.py')


def toy_model_cfg(**gates):
    cfg = Config.fromfile(TOY).model
    cfg.gates = dict(
        mode='iteration',
        ts_start_iter=0,
        corr_start_iter=0,
        teacher_start_iter=0)
    cfg.gates.update(gates)
    return cfg


def gt(boxes, labels, size=64):
    inst = InstanceData()
    inst.bboxes = torch.tensor(boxes, dtype=torch.float32)
    inst.labels = torch.tensor(labels)
    inst.box_masks = strided_box_masks(inst.bboxes, (size // 4, size // 4), 4)
    return inst


def test_box_targets_by_hand_and_against_mmdet():
    head = MODELS.build(toy_model_cfg().mask_head)
    inst = gt([[16, 16, 48, 48]], [2])
    t = head.box_targets_single(inst, (16, 16))
    # size 32: levels 1 (12-48, grid 24) and 2 (24-96, grid 16); centre
    # 32 px; pos range 3.2 px -> rows/cols 11..13 and 7..8 (see docstring)
    cells1 = sorted((r * 24 + c) for r in (11, 12, 13) for c in (11, 12, 13))
    cells2 = sorted((r * 16 + c) for r in (7, 8) for c in (7, 8))
    assert t['pos_level'].tolist() == [1] * 9 + [2] * 4
    assert t['pos_cell'].tolist() == cells1 + cells2
    assert (t['labels'][1].view(-1)[cells1] == 2).all()
    assert (t['labels'][1] != 4).sum() == 9 and (t['labels'][0] == 4).all()
    # best level: sqrt(lo*hi) nearest 32 is level 1 (24), centre cell
    assert t['best_level'].tolist() == [1]
    assert t['best_cell'].tolist() == [12 * 24 + 12]

    # mmdet's loop agrees when fed the release's box masks (GenerateBoxMask:
    # pixels round(x1)..round(x2) inclusive) at full resolution
    boxes = [[4, 6, 30, 20], [20, 30, 60, 62], [8, 8, 24, 40], [33, 1, 41, 9],
             [2, 3, 61, 60], [40, 40, 52, 47]]
    inst = gt(boxes, [0, 1, 3, 2, 1, 0])
    masks = torch.zeros(len(boxes), 64, 64, dtype=torch.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2 + 1, x1:x2 + 1] = 1
    ref = inst.clone()
    ref.masks = BitmapMasks(masks.numpy(), 64, 64)
    _, labels, pos_masks, pos_indexes = head._get_targets_single(
        ref, featmap_sizes=(16, 16))
    ours = head.box_targets_single(inst, (16, 16))
    for level in range(5):
        assert torch.equal(ours['labels'][level], labels[level].flatten())
        got = ours['pos_cell'][ours['pos_level'] == level].tolist()
        assert got == list(pos_indexes[level]), level


def test_mil_loss_values_by_hand():
    """Release dice: 1 - 2 sum(x t) / ((sum x^2 + .001) + (sum t^2 +
    .001)) on the column and row maxima."""
    loss = BoxProjectionLoss(use_sigmoid=False, eps=0.002)
    probs = torch.tensor([[[0.2, 0.9, 0.0], [0.4, 0.1, 0.0]]])
    box = torch.tensor([[[1, 1, 0], [1, 1, 0]]], dtype=torch.float32)
    # max over rows (per column): [0.4, 0.9, 0] vs [1, 1, 0]
    col = 1 - 2 * (0.4 + 0.9) / ((0.16 + 0.81 + 0.001) + (2 + 0.001))
    # max over columns (per row): [0.9, 0.4] vs [1, 1]
    row = 1 - 2 * (0.9 + 0.4) / ((0.81 + 0.16 + 0.001) + (2 + 0.001))
    got = loss(probs, box, reduction_override='none')
    assert math.isclose(got.item(), col + row, rel_tol=1e-6)
    # a prediction filling the box exactly scores ~0
    assert loss(box, box).item() < 1e-3


def toy_batch(model, with_masks=False):
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    samples, inputs = [], []
    for boxes, labels in (([[8, 8, 40, 44], [30, 20, 60,
                                             50]], [0, 1]), ([[4, 30, 44,
                                                               62]], [0])):
        s = DetDataSample(
            metainfo=dict(
                img_shape=(64, 64),
                ori_shape=(64, 64),
                scale_factor=(1., 1.),
                pad_shape=(64, 64),
                batch_input_shape=(64, 64)))
        inst = InstanceData()
        inst.bboxes = torch.tensor(boxes, dtype=torch.float32)
        inst.labels = torch.tensor(labels)
        if with_masks:
            inst.masks = BitmapMasks(
                np.random.default_rng(0).integers(
                    0, 2, (len(boxes), 64, 64), dtype=np.uint8), 64, 64)
        s.gt_instances = inst
        samples.append(s)
        inputs.append(torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8))
    return model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=True)


class Untouchable:
    """Stands in for gt masks: any use but ``len`` raises."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getattr__(self, name):
        raise AssertionError(f'gt masks read: .{name}')

    def __getitem__(self, index):
        raise AssertionError('gt masks indexed')


def build(cfg, bank=True):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.ema_updates += 1
    if bank:
        model.memory_bank = ObjectMemoryBank(
            num_classes=4,
            min_size=0,
            fg_iou_thresh=0,
            bg_iou_thresh=0,
            appear_thresh=-1,
            ratio_range=(0, 100))
        model.mask_head.corr_cfg['min_retrieval'] = 1
    model.train()
    return model


def first_losses(with_masks, method='message_passing'):
    """Losses of one batch with every gate open and a 2-object bank."""
    cfg = toy_model_cfg()
    cfg.mask_head.correspondence = dict(method=method)
    model = build(cfg)
    model.memory_bank.push(
        torch.tensor([0, 0]), torch.rand(2, 128, 7, 7), torch.rand(2, 28, 28),
        torch.tensor([[0, 0, 30, 30.]] * 2))
    data = toy_batch(model, with_masks=with_masks)
    if with_masks:
        for s in data['data_samples']:
            # any read of the masks raises
            s.gt_instances.masks = Untouchable(len(s.gt_instances))
    return {k: v.item() for k, v in model(**data, mode='loss').items()}


def test_losses_never_read_masks():
    ref, got = first_losses(False), first_losses(True)
    assert got == ref
    assert ref['loss_ts'] > 0 and ref['loss_corr'] > 0
    assert ref['corr_queries'] >= 1 and ref['gate_corr'] == 1


def test_gates_running_loss_and_iteration():
    model = build(
        toy_model_cfg(mode='running_loss', teacher_start_iter=5), bank=False)
    assert model.current_gates() == dict(ts=False, corr=False, teacher=False)
    model.running_mil_loss.fill_(0.25)
    assert model.current_gates()['ts'] and not model.current_gates()['corr']
    model.running_mil_loss.fill_(0.1)
    assert model.current_gates()['corr']
    model.train_iters.fill_(5)
    assert model.current_gates()['teacher']
    # the running average follows avg <- 0.9 avg + 0.1 L_mil
    model.running_mil_loss.fill_(2.0)
    model.train_iters.zero_()
    model.with_correspondence = False
    losses = model(**toy_batch(model), mode='loss')
    want = 0.9 * 2.0 + 0.1 * losses['loss_mask'].item()
    assert math.isclose(model.running_mil_loss.item(), want, rel_tol=1e-6)
    assert int(model.train_iters) == 1
    assert losses['gate_ts'] == 0 and losses['loss_ts'] == 0
    # a batch without mask positives leaves the average alone
    model._update_running_loss(torch.tensor(0.0), torch.tensor(0.0))
    assert math.isclose(model.running_mil_loss.item(), want, rel_tol=1e-6)
    assert 'loss' not in 'mil_running_avg'  # logged, not summed

    it = build(toy_model_cfg(ts_start_iter=2, corr_start_iter=3), bank=False)
    assert not it.current_gates()['ts']
    it.train_iters.fill_(2)
    assert it.current_gates()['ts'] and not it.current_gates()['corr']
    ablated = build(toy_model_cfg(), bank=False)
    ablated.with_mean_field = ablated.with_correspondence = False
    assert ablated.current_gates() == dict(ts=False, corr=False, teacher=True)
    with pytest.raises(KeyError, match='unknown gates'):
        MODELS.build(toy_model_cfg(ts_threshold=0.3))


def test_teacher_is_used_only_after_its_start():
    cfg = toy_model_cfg(teacher_start_iter=10)
    model = build(cfg, bank=False)
    model.with_correspondence = False
    for _, buf in model.teacher.named_buffers():
        if buf.is_floating_point():
            buf.fill_(float('nan'))
    # before the start the student's predictions stand in: finite losses
    losses = model(**toy_batch(model), mode='loss')
    assert torch.isfinite(losses['loss_ts']) and losses['loss_ts'] > 0
    before = losses['loss_ts'].item()
    # after it, the NaN teacher's probabilities vote every pixel to
    # background, and dice against empty labels is exactly 1
    model.train_iters.fill_(10)
    losses = model(**toy_batch(model), mode='loss')
    assert losses['loss_ts'].item() == 1.0 != before
    model.ema_updates.zero_()
    with pytest.raises(RuntimeError, match='EMATeacherHook'):
        model(**toy_batch(model), mode='loss')


def test_correspondence_gate_without_a_bank_is_an_error():
    model = build(toy_model_cfg(), bank=False)
    with pytest.raises(RuntimeError, match='MemoryBankHook'):
        model(**toy_batch(model), mode='loss')


def test_boxes_from_mask_extents():
    masks = torch.zeros(3, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 0] = True
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[2, 1, 5, 3], [0, 4, 1, 5], [0, 0, 0, 0]]


def test_cross_unary_is_pasted_onto_the_box_exactly():
    head = MODELS.build(toy_model_cfg().mask_head)
    canvas = torch.zeros(2, 4, 8)
    unary = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])  # [2, 1, 2]
    head._paste(canvas, unary, torch.tensor([8.0, 0.0, 24.0, 16.0]))
    # columns 2..5 sample x = 10, 14, 18, 22 of the 16-px box: grid -0.75,
    # -0.25, 0.25, 0.75 between cell centres -0.5 and 0.5
    torch.testing.assert_close(canvas[0, 0],
                               torch.tensor([0, 0, 0, .25, .75, 1, 0, 0.]))
    torch.testing.assert_close(canvas[1, 3],
                               torch.tensor([0, 0, 1, .75, .25, 0, 0, 0.]))
    assert canvas[:, :, :2].abs().sum() == 0


def test_images_without_objects_and_tiny_boxes():
    head = MODELS.build(toy_model_cfg().mask_head)
    empty = InstanceData()
    empty.bboxes = torch.zeros(0, 4)
    empty.labels = torch.zeros(0, dtype=torch.long)
    empty.box_masks = torch.zeros(0, 16, 16, dtype=torch.bool)
    t = head.box_targets_single(empty, (16, 16))
    assert len(t['pos_cell']) == 0
    assert all((labels == 4).all() for labels in t['labels'])
    # a 3-px box misses every stride-4 sample: a category positive (as in
    # mmdet) without a mask target
    tiny = gt([[11, 11, 13.9, 13.9]], [1])
    t = head.box_targets_single(tiny, (16, 16))
    assert not t['valid'][0] and len(t['pos_cell']) > 0
    assert (t['labels'][0] == 1).sum() == len(t['pos_cell'])
    # a batch with an empty image and a tiny box trains
    model = build(toy_model_cfg(), bank=True)
    data = toy_batch(model)
    sample = data['data_samples'][1]
    sample.gt_instances = sample.gt_instances[torch.zeros(
        len(sample.gt_instances), dtype=torch.bool)]
    sample.gt_instances.box_masks = torch.zeros(0, 16, 16, dtype=torch.bool)
    losses = model(**data, mode='loss')
    assert torch.isfinite(sum(v for k, v in losses.items() if 'loss' in k))


def test_sinkhorn_solver_trains():
    """The paper's solver in the training loop: its own targets, so a
    different L_nce, and the same MIL loss."""
    ref, ot = first_losses(False), first_losses(False, method='sinkhorn')
    assert ot['loss_corr'] > 0 and ot['loss_corr'] != ref['loss_corr']
    assert ot['loss_mask'] == ref['loss_mask']
    assert ot['corr_queries'] == ref['corr_queries']


# -- pseudo masks for PseudoMaskQualityHook ----------------------------------
def eval_batch(model, eval_masks='bitmap'):
    """Two images, the second 64 x 56 (padded to 64 x 64), with evaluation
    masks (the box without its top-left quarter) as
    ``PackDetInputsWithEvalMasks`` packs them: ``'bitmap'``,
    ``'untouchable'`` (any read raises; set after the data preprocessor,
    whose device cast probes every field) or None."""
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    samples, inputs = [], []
    images = (((64, 64), [[8, 8, 40, 44],
                          [30, 20, 60,
                           50]], [0, 1]), ((64, 56), [[4, 30, 44, 62]], [0]))
    for (h, w), boxes, labels in images:
        s = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
        inst = InstanceData()
        inst.bboxes = torch.tensor(boxes, dtype=torch.float32)
        inst.labels = torch.tensor(labels)
        truth = np.zeros((len(boxes), h, w), np.uint8)
        for m, (x1, y1, x2, y2) in zip(truth, boxes):
            m[y1:y2, x1:x2] = 1
            m[y1:(y1 + y2) // 2, x1:(x1 + x2) // 2] = 0
        if eval_masks == 'bitmap':
            inst.eval_masks = BitmapMasks(truth, h, w)
        s.gt_instances = inst
        samples.append(s)
        inputs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8))
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=True)
    if eval_masks == 'untouchable':
        for s in data['data_samples']:
            s.gt_instances.eval_masks = Untouchable(len(s.gt_instances))
    return data


def test_eval_masks_change_no_loss():
    """Every gate open (mean-field, correspondence, bank, EMA teacher):
    evaluation masks, present or not, give the same losses, and one that
    raises on any read is never read."""
    out = {}
    for kind in (None, 'bitmap', 'untouchable'):
        model = build(toy_model_cfg())
        model.memory_bank.push(
            torch.tensor([0, 0]), torch.rand(2, 128, 7, 7),
            torch.rand(2, 28, 28), torch.tensor([[0, 0, 30, 30.]] * 2))
        data = eval_batch(model, kind)
        out[kind] = {
            k: v.item()
            for k, v in model(**data, mode='loss').items()
        }
        recs = model.last_pseudo_masks
        assert len(recs) == 2
        for rec, s in zip(recs, data['data_samples']):
            assert rec['eval_masks'] is s.gt_instances.get('eval_masks')
    assert out['bitmap'] == out[None] == out['untouchable']
    assert out[None]['loss_ts'] > 0 and out[None]['corr_queries'] >= 1
    assert out[None]['loss_ts_corr'] > 0


def test_pseudo_masks_are_the_majority_vote_and_scored_by_the_hook(
        monkeypatch):
    from mmboxseg.engine.hooks import PseudoMaskQualityHook
    from mmboxseg.models.dense_heads import discobox_solov2_head as mod
    model = build(toy_model_cfg(), bank=False)
    model.with_correspondence = False
    fields, mean_field = [], mod.mean_field

    def spy(*args, **kwargs):
        fields.append(mean_field(*args, **kwargs))
        return fields[-1]

    monkeypatch.setattr(mod, 'mean_field', spy)
    data = eval_batch(model)
    losses = model(**data, mode='loss')
    assert losses['gate_ts'] == 1 and len(fields) == 1  # L_con only
    labels = (fields[0] > 0.5).numpy()
    recs = model.last_pseudo_masks
    assert len(recs) == len(data['data_samples']) == 2
    # the grid: mask features at stride 4 of the padded 64 x 64 batch,
    # the box masks' grid (cell (i, j) at input pixel (4j + 2, 4i + 2))
    batch_h, batch_w = data['inputs'].shape[-2:]
    assert (batch_h, batch_w) == (64, 64)
    # rows of the labels, by hand: level-major positives of each image
    # with a non-empty box mask, images in order
    rows = []
    for img, s in enumerate(data['data_samples']):
        gt_inst = s.gt_instances
        t = model.mask_head.box_targets_single(gt_inst, (16, 16))
        rows += [(img, int(g)) for g in t['pos_gt'][t['valid'][t['pos_gt']]]]
    assert len(rows) == len(labels)
    disagree = False
    for img, (rec, s) in enumerate(zip(recs, data['data_samples'])):
        gt_inst = s.gt_instances
        assert rec['stride'] == 4 and rec['masks'].dtype == torch.bool
        assert rec['masks'].shape == (len(gt_inst), batch_h // 4, batch_w // 4)
        assert rec['masks'].shape == gt_inst.box_masks.shape
        for g in range(len(gt_inst)):
            mine = labels[[r == (img, g) for r in rows]]
            assert bool(rec['valid'][g]) == (len(mine) > 0)
            want = mine.mean(0) > 0.5 if len(mine) else np.zeros((16, 16))
            np.testing.assert_array_equal(rec['masks'][g].numpy(), want)
            disagree |= len(mine) > 1 and bool(
                (mine.any(0) != mine.all(0)).any())
        # mean-field labels never leave the box masks
        assert not (rec['masks'] & ~gt_inst.box_masks).any()
    assert disagree  # the vote is exercised, not a copy of one row
    assert all(rec['valid'].all() for rec in recs)

    # the hook's score, by hand with numpy at the cell centres 2::4
    ious, num_rows = [], 0
    for rec, s in zip(recs, data['data_samples']):
        truth = s.gt_instances.eval_masks.masks.astype(bool)
        truth = truth[:, 2::4, 2::4]
        full = np.zeros((len(truth), 16, 16), bool)
        full[:, :truth.shape[1], :truth.shape[2]] = truth
        pseudo = rec['masks'].numpy()
        num_rows += len(pseudo)
        for p, t, v in zip(pseudo, full, rec['valid'].numpy()):
            if v and t.any():  # valid rows with a ground-truth mask
                ious.append((p & t).sum() / (p | t).sum())
    assert truth.shape == (1, 16, 14)  # the 56-px image: 2 padding cols
    stats = PseudoMaskQualityHook.score(recs)
    assert len(ious) == 3 and 0 < stats['pseudo_miou'] < 100
    assert stats['pseudo_miou'] == pytest.approx(100 * np.mean(ious))
    assert stats['pseudo_valid_frac'] == 3 / num_rows == 1.0


def test_pseudo_mask_records_by_hand():
    head = MODELS.build(toy_model_cfg().mask_head)
    labels = torch.zeros(5, 2, 3, dtype=torch.bool)
    labels[0, 0] = labels[1, 0, :2] = labels[2, 0, 0] = True  # votes 3 2 1
    labels[3, 1] = labels[4, 1, 2] = True  # instance 1: votes 1 1 2 of 2
    img_inds = torch.tensor([0, 0, 0, 0, 0])
    pos_gt = torch.tensor([0, 0, 0, 1, 1])
    gts = [
        InstanceData(labels=torch.tensor([0, 1, 2])),
        InstanceData(labels=torch.tensor([3]))
    ]
    gts[1].eval_masks = BitmapMasks(np.zeros((1, 8, 12), np.uint8), 8, 12)
    recs = head.pseudo_mask_records(labels, img_inds, pos_gt, gts)
    assert len(recs) == 2
    assert recs[0]['masks'][0].tolist() == [[True, True, False],
                                            [False, False, False]]
    # a tie (1 of 2) is background
    assert recs[0]['masks'][1].tolist() == [[False, False, False],
                                            [False, False, True]]
    assert recs[0]['valid'].tolist() == [True, True, False]
    assert recs[0]['eval_masks'] is None and recs[0]['stride'] == 4
    assert recs[1]['masks'].shape == (1, 2, 3)
    assert recs[1]['valid'].tolist() == [False]  # no labelled cell
    assert recs[1]['eval_masks'] is gts[1].eval_masks


def test_pseudo_masks_follow_the_gate():
    """Gate closed: no records and nothing logged; open: one record per
    image, scored; closed again: the old records are gone. Open with no
    labelled cell: records without valid rows."""
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from mmboxseg.engine.hooks import PseudoMaskQualityHook
    model = build(toy_model_cfg(ts_start_iter=1, corr_start_iter=1), False)
    model.with_correspondence = False
    hook = PseudoMaskQualityHook()
    hub = MessageHub.get_instance('test_discobox_pseudo_masks')
    runner = SimpleNamespace(model=model, message_hub=hub, iter=0)
    model(**eval_batch(model), mode='loss')
    assert model.last_pseudo_masks == []
    hook.after_train_iter(runner, 0)
    assert 'train/pseudo_miou' not in hub.log_scalars
    losses = model(**eval_batch(model), mode='loss')  # step 1: open
    assert losses['gate_ts'] == 1 and len(model.last_pseudo_masks) == 2
    hook.after_train_iter(runner, 1)
    assert hub.get_scalar('train/pseudo_miou').current() == pytest.approx(
        PseudoMaskQualityHook.score(model.last_pseudo_masks)['pseudo_miou'])
    model.train_iters.zero_()
    model(**eval_batch(model), mode='loss')
    assert model.last_pseudo_masks == []
    # open, but a 3-px box has no mask positive: nothing to vote on
    model.train_iters.fill_(1)
    data = toy_batch(model)
    for s in data['data_samples']:
        s.gt_instances = gt([[11, 11, 13.9, 13.9]], [1])
    losses = model(**data, mode='loss')
    assert losses['gate_ts'] == 1 and losses['mil_positives'] == 0
    recs = model.last_pseudo_masks
    assert len(recs) == 2 and not any(r['valid'].any() for r in recs)
    assert recs[0]['masks'].shape == (1, 16, 16)
    assert PseudoMaskQualityHook.score(recs) is None


# -- release fidelity of the correspondence branch ---------------------------
def test_query_level_is_nearest_in_ratio():
    """Release ``best_target_single``: ``mid / size``, inverted below 1,
    argmin (log-scale distance to ``sqrt(lo * hi)``), not ``|size -
    mid|``."""
    head = MODELS.build(toy_model_cfg().mask_head)
    # toy mids sqrt(1 * 24) = 4.9 and sqrt(12 * 48) = 24: a 12-px box is
    # 2.45x the first, 2x below the second (linear: 7.1 vs 12 -> level 0)
    t = head.box_targets_single(gt([[20, 20, 32, 32]], [0]), (16, 16))
    assert t['best_level'].tolist() == [1]
    coco = MODELS.build(
        dict(
            toy_model_cfg().mask_head,
            scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384,
                                                                      2048))))
    sizes = torch.linspace(2, 1500, 300)
    boxes = torch.stack(
        [torch.zeros_like(sizes),
         torch.zeros_like(sizes), sizes, sizes], 1)
    inst = InstanceData(
        bboxes=boxes,
        labels=torch.zeros(len(sizes), dtype=torch.long),
        box_masks=torch.ones(len(sizes), 4, 4, dtype=torch.bool))
    got = coco.box_targets_single(inst, (4, 4))['best_level']
    mids = torch.tensor([(lo * hi)**0.5 for lo, hi in coco.scale_ranges])
    diffs = mids[None] / (sizes[:, None] + 1e-6)
    diffs[diffs < 1] = 1 / (diffs[diffs < 1] + 1e-6)
    assert torch.equal(got, diffs.argmin(1))


def _teacher_from_student(model):
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        for name, buf in model.teacher.named_buffers():
            buf.copy_(state[name])


@pytest.mark.parametrize('solve_on', ['student', 'teacher'])
def test_correspondence_is_solved_on_the_student(solve_on):
    """Release ``solve(qobj, kobjs, roi_s_feat)``: ``L_nce``'s targets come
    from the student's own cost volume, so the teacher's features do not
    change it; ``solve_on='teacher'`` (the paper's text) they do."""
    got = []
    for same in (False, True):
        cfg = toy_model_cfg()
        cfg.mask_head.correspondence = dict(
            solve_on=solve_on, bank_push='after_losses')
        model = build(cfg)
        if same:
            _teacher_from_student(model)
        torch.manual_seed(1)
        model.memory_bank.push(
            torch.tensor([0, 0]), torch.rand(2, 128, 7, 7),
            torch.rand(2, 28, 28), torch.tensor([[0, 0, 30, 30.]] * 2))
        losses = model(**toy_batch(model), mode='loss')
        assert losses['corr_queries'] == 2
        got.append(losses['loss_corr'].item())
    assert (got[0] == got[1]) == (solve_on == 'student')


def test_cross_image_consistency_covers_every_query():
    """Release ``corr_loss``: mean-field with the cross-image unary runs for
    every instance (zero unary without partners) and the dice is averaged
    over all of them, so ``loss_ts_corr`` is on with an empty bank."""
    model = build(toy_model_cfg())
    model.mask_head.corr_cfg['min_retrieval'] = 5
    losses = model(**toy_batch(model), mode='loss')
    assert losses['corr_queries'] == 0
    assert losses['loss_ts_corr'] > 0.1


def test_bank_push_is_interleaved_with_retrieval():
    """Release: each query's teacher RoI enters the bank right after its
    own retrieval, so the third instance (class 0) finds the first;
    ``bank_push='after_losses'`` (paper) finds nothing in an empty
    bank."""
    for push, want in (('interleaved', 1), ('after_losses', 0)):
        cfg = toy_model_cfg()
        cfg.mask_head.correspondence = dict(bank_push=push)
        model = build(cfg)
        losses = model(**toy_batch(model), mode='loss')
        assert losses['corr_queries'] == want
        assert len(model.memory_bank) == 3


def test_cross_image_term_scales_the_gradient_not_the_value():
    """Release: ``s * 0.01 + s.detach() * 0.99`` into the dice."""
    head = MODELS.build(toy_model_cfg().mask_head)
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 8, requires_grad=True)
    boxes = torch.zeros(2, 8, 8, dtype=torch.bool)
    boxes[:, 2:6, 1:7] = True
    pairwise = torch.rand(2, 9, 8, 8)
    teacher = torch.rand(2, 8, 8)
    out = []
    for scale in (1.0, 0.01):
        logits.grad = None
        loss = head.consistency_loss(
            logits.sigmoid(), teacher, boxes, pairwise, grad_scale=scale)
        loss.backward()
        out.append((loss.item(), logits.grad.clone()))
    assert math.isclose(out[0][0], out[1][0], rel_tol=1e-6)
    torch.testing.assert_close(out[1][1], out[0][1] * 0.01)
    assert head.corr_cfg['ts_weight'] == 0.01
