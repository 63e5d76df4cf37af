# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM detector wiring: the momentum encoder's outputs line up with the
student's positives, Eqs. 8-9 use the right proposals and targets, the
preprocessor applies occlusion, the hook binds and refuses."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.structures import InstanceData

from mmboxseg.engine.hooks import EMATeacherHook, MemoryBankHook
from mmboxseg.models.utils import MemoryBank
from mmboxseg.registry import DATASETS, MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO, toy_config

register_all_modules()

CFG = osp.join(REPO, 'configs/sim/sim_r18_fpn_toy.py')


def build(tiny_toy, tmp_path, **extra):
    cfg = toy_config(tiny_toy, str(tmp_path), CFG, **extra)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    EMATeacherHook().update(model, 0.0, 'copy')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    return model, pseudo_collate([dataset[i] for i in range(3)])


def test_momentum_outputs_align_with_the_student(tiny_toy, tmp_path):
    model, data = build(tiny_toy, tmp_path,
                        **{'model.data_preprocessor.copy_paste': None})
    model.eval()  # teacher == student, same BN statistics
    data = model.data_preprocessor(data, training=True)
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad():
        x = model.extract_feat(inputs)
        model.bbox_head.loss(x, samples)
        infos = model.bbox_head.get_positive_infos()
        model.attach_momentum_outputs(inputs, infos)
        _, bbox_preds, _, _ = model.bbox_head(x)
        preds = model.mask_head(x, infos)[0]
    dists = torch.cat([
        b.permute(0, 2, 3, 1).reshape(len(samples), -1, 4) for b in bbox_preds
    ], 1)
    assert sum(len(i) for i in infos) > 0
    for i, info in enumerate(infos):
        torch.testing.assert_close(info.teacher_param_preds, info.param_preds)
        d = dists[i][info.pos_inds]
        p = info.points
        want = torch.stack([
            p[:, 0] - d[:, 0], p[:, 1] - d[:, 1], p[:, 0] + d[:, 2],
            p[:, 1] + d[:, 3]
        ], 1)
        torch.testing.assert_close(info.teacher_bboxes, want)
        teacher = model.mask_head.forward_single(
            info.metainfo['teacher_mask_feats'],
            InstanceData(
                param_preds=info.teacher_param_preds,
                points=info.points,
                strides=info.strides))[0]
        torch.testing.assert_close(teacher, preds[i])


def test_pseudo_and_paste_losses_use_the_right_targets(tiny_toy, tmp_path):
    model, data = build(
        tiny_toy, tmp_path, **{
            'model.data_preprocessor.copy_paste': None,
            'model.mask_head.pseudo_start_iters': 0,
            'model.mask_head.tau_high': 0.3,
            'model.mask_head.tau_low': 0.1,
        })
    model.train()
    data = model.data_preprocessor(data, training=True)
    # mark ground truth 0 of image 0 as pasted, with a hand-made mask
    gt = data['data_samples'][0].gt_instances
    gt.pasted[0] = True
    gt.paste_masks[0, 2:6, 3:9] = True
    head = model.mask_head
    seen = {}
    labels_fn, extra_fn = head.image_pseudo_labels, head.extra_losses

    def labels_spy(*args):
        out = labels_fn(*args)
        seen.setdefault('labels', []).append(out)
        return out

    def extra_spy(preds, sampled, *args):
        seen['preds'], seen['sampled'] = preds.detach(), sampled
        return extra_fn(preds, sampled, *args)

    head.image_pseudo_labels, head.extra_losses = labels_spy, extra_spy
    losses = model(**data, mode='loss')
    preds, sampled = seen['preds'], seen['sampled']
    targets, weights, pasted, ptargets = [], [], [], []
    for (g, inds, valid, _), (_, pseudo, weight, _,
                              _) in zip(sampled, seen['labels']):
        targets.append(pseudo[inds])
        weights.append(weight[inds])
        pasted.append(g.pasted[inds])
        ptargets.append(g.paste_masks[inds])
    targets, weights = torch.cat(targets), torch.cat(weights)
    pasted, ptargets = torch.cat(pasted), torch.cat(ptargets)
    keep = weights.flatten(1).any(1)
    assert keep.any() and pasted.any() and not pasted.all()
    # the code: focal on probabilities x 0.3 x min(t / T, 1) (T = 4,500 in
    # the toy config), one number for the batch
    ramp = min(int(head._iter) / 4500, 1.0)
    want = head.loss_pseudo(preds[keep], targets[keep], weights[keep]) * ramp
    torch.testing.assert_close(losses['loss_pseudo'], want)
    # focal + dice on the whole map of the pasted proposals, the dice
    # averaged over all proposals
    want = head.loss_paste(preds, ptargets, pasted[:, None,
                                                   None].expand_as(preds))
    torch.testing.assert_close(losses['loss_paste'], want)
    assert head.loss_pseudo.loss_weight == 0.3
    assert head.loss_paste.loss_weight == 1.0
    assert head.loss_paste.dice_weight == 1.0
    # bank inputs written for the detector
    assert gt.sim_prob.shape == gt.box_masks.shape
    assert ((gt.sim_prob > 0) <= gt.box_masks).all()


def test_preprocessor_pastes_and_cuts_box_masks(tiny_toy, tmp_path):
    model, data = build(
        tiny_toy, tmp_path, **{
            'model.data_preprocessor.copy_paste.prob': 1.0,
            'model.data_preprocessor.copy_paste.mask_thr': 0.0,
        })
    pre = model.data_preprocessor
    raw = [x.clone() for x in data['inputs']]
    h, w = raw[0].shape[-2:]
    assert all(x.shape[-2:] == (h, w) for x in raw)
    # the pasted object is the whole left half of the image
    bank = MemoryBank(length=1)
    img = torch.full((3, h, w), 7, dtype=torch.uint8)
    bank.push(img, torch.tensor([[0., 0., w // 2 - 1, h - 1]]),
              torch.tensor([2]), torch.ones(1, h // 4, w // 4),
              torch.tensor([1.0]))
    pre.copy_paste.memory_bank = bank
    out = pre(data, training=True)
    half = w // 8  # columns of the stride-4 grid
    for sample, before in zip(out['data_samples'], raw):
        gt = sample.gt_instances
        assert gt.pasted[-1] and gt.labels[-1] == 2
        # no other box mask keeps a pixel of the pasted half
        assert not gt.box_masks[:-1][:, :, :half].any()
        assert gt.paste_masks[-1][:h // 4, :half].all()
        assert not gt.paste_masks[-1][:, half:].any()
        assert not gt.paste_masks[:-1].any()
        assert (sample.raw_image[:, :, :w // 2] == 7).all()
        assert torch.equal(sample.raw_image[:, :, w // 2:], before[:, :,
                                                                   w // 2:])
        assert sample.color_similarity.shape[-2:] == gt.box_masks.shape[-2:]


def test_preprocessor_draws_the_paste_once_per_batch(tiny_toy, tmp_path):
    """condinst.py draws random.random() >= 0.5 once per forward pass: the
    images of a batch are all pasted onto or none is."""
    import copy
    model, data = build(
        tiny_toy, tmp_path, **{
            'model.data_preprocessor.copy_paste.mask_thr': 0.0,
        })
    pre = model.data_preprocessor
    assert pre.copy_paste.prob == 0.5 and pre.copy_paste.prob_per == 'batch'
    h, w = data['inputs'][0].shape[-2:]
    bank = MemoryBank(length=1, seed=3)
    bank.push(
        torch.full((3, h, w), 7, dtype=torch.uint8),
        torch.tensor([[0., 0., w // 2 - 1, h - 1]]), torch.tensor([2]),
        torch.ones(1, h // 4, w // 4), torch.tensor([1.0]))
    pre.copy_paste.memory_bank = bank
    outcomes = []
    for _ in range(16):
        out = pre(copy.deepcopy(data), training=True)
        pasted = [
            bool(s.gt_instances.pasted.any()) for s in out['data_samples']
        ]
        assert len(set(pasted)) == 1, pasted
        outcomes.append(pasted[0])
    assert 0 < sum(outcomes) < len(outcomes)


def test_prototypes_of_the_step_start(tiny_toy, tmp_path):
    """dmh l.349-358: Eq. 1 and the Sinkhorn scores of every image of the
    batch use the prototypes of the step's start, while the momentum
    update chains image by image."""
    model, data = build(tiny_toy, tmp_path,
                        **{'model.data_preprocessor.copy_paste': None})
    model.train()
    data = model.data_preprocessor(data, training=True)
    head = model.mask_head
    head.prototype_pos_thr = 0.0  # every box pixel moves the prototypes
    before = head.prototypes.clone()
    seen = {'labels': [], 'update': []}
    labels_fn, update_fn = head.image_pseudo_labels, head.update_prototypes

    def labels_spy(gt, inds, valid, info, prototypes=None):
        seen['labels'].append(prototypes.clone())
        return labels_fn(gt, inds, valid, info, prototypes)

    def update_spy(*args):
        seen['update'].append(args[-2].clone())
        return update_fn(*args)

    head.image_pseudo_labels = labels_spy
    head.update_prototypes = update_spy
    torch.manual_seed(0)
    model(**data, mode='loss')
    assert len(seen['labels']) >= 2
    for protos in seen['labels'] + seen['update']:
        assert torch.equal(protos, before)
    assert not torch.equal(head.prototypes, before)


def test_preprocessor_refuses_copy_paste_with_masks(tiny_toy, tmp_path):
    model, data = build(tiny_toy, tmp_path)
    pre = model.data_preprocessor
    pre.copy_paste.memory_bank = MemoryBank(length=1)
    from mmdet.structures.mask import BitmapMasks
    gt = data['data_samples'][0].gt_instances
    h, w = data['inputs'][0].shape[-2:]
    gt.masks = BitmapMasks(
        torch.zeros(len(gt), h, w, dtype=torch.uint8).numpy(), h, w)
    # under box supervision the masks are dropped before the paste ...
    pre(copy.deepcopy(data), training=True)
    # ... under mixed supervision copy-paste refuses them
    pre.supervision = 'mixed'
    with pytest.raises(ValueError, match='box-only'):
        pre(data, training=True)


def test_memory_bank_hook_binds_saves_and_refuses(tiny_toy, tmp_path):
    model, _ = build(tiny_toy, tmp_path)

    class Runner:
        pass

    runner = Runner()
    runner.model = model
    hook = MemoryBankHook(bank=dict(type='MemoryBank', length=3))
    hook.before_train(runner)
    assert model.memory_bank is hook.bank
    assert model.data_preprocessor.copy_paste.memory_bank is hook.bank
    hook.bank.push(
        torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(1, 4),
        torch.zeros(1), torch.zeros(1, 2, 2), torch.ones(1))
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    other = MemoryBankHook(bank=dict(type='MemoryBank', length=3))
    other.after_load_checkpoint(runner, ckpt)
    assert len(other.bank) == 1 and other.bank.num_pushed == 1
    runner.model = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match='takes a memory bank'):
        hook.before_train(runner)


def test_sim_needs_the_ema_hook(tiny_toy, tmp_path):
    cfg = toy_config(tiny_toy, str(tmp_path), CFG)
    model = MODELS.build(cfg.model)
    with pytest.raises(RuntimeError, match='EMATeacherHook'):
        model.loss(torch.zeros(1, 3, 64, 64), [])
    with pytest.raises(ValueError, match='tau_low'):
        MODELS.build(dict(cfg.model.mask_head, tau_low=0.9, tau_high=0.5))


def test_preprocessor_drops_instances_hidden_at_the_mask_stride(
        tiny_toy, tmp_path):
    from mmdet.structures.bbox import HorizontalBoxes
    model, data = build(
        tiny_toy, tmp_path, **{
            'model.data_preprocessor.copy_paste.prob': 1.0,
            'model.data_preprocessor.copy_paste.mask_thr': 0.0,
        })
    pre = model.data_preprocessor
    h, w = data['inputs'][0].shape[-2:]
    for sample in data['data_samples']:
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(torch.tensor([[0., 0., 40., 40.]])),
            labels=torch.tensor([1]))
    # the paste covers columns 0..38 of every row: the box keeps columns 39
    # and 40 at full resolution, none of the stride-4 samples (2, 6, .. 38,
    # 42), so its mask targets would be empty
    bank = MemoryBank(length=1)
    bank.push(
        torch.zeros(3, h, w, dtype=torch.uint8),
        torch.tensor([[0., 0., 38., h - 1.]]), torch.tensor([3]),
        torch.ones(1, h // 4, w // 4), torch.tensor([1.0]))
    pre.copy_paste.memory_bank = bank
    out = pre(data, training=True)
    for sample in out['data_samples']:
        gt = sample.gt_instances
        assert gt.labels.tolist() == [3] and gt.pasted.tolist() == [True]
        assert len(gt.box_masks) == len(gt.paste_masks) == 1


def test_hook_restores_only_on_resume_and_checks_bank_size(tiny_toy, tmp_path):
    model, _ = build(tiny_toy, tmp_path)

    class Runner:
        pass

    runner = Runner()
    runner.model = model
    hook = MemoryBankHook(bank=dict(type='MemoryBank', length=2))
    push_one = (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(1, 4),
                torch.zeros(1), torch.zeros(1, 2, 2), torch.ones(1))
    hook.bank.push(*push_one)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    fresh = MemoryBankHook(bank=dict(type='MemoryBank', length=2))
    runner._resume = False  # load_from: fine-tuning starts empty
    fresh.after_load_checkpoint(runner, ckpt)
    assert len(fresh.bank) == 0
    runner._resume = True
    fresh.after_load_checkpoint(runner, ckpt)
    assert len(fresh.bank) == 1
    model.data_preprocessor.copy_paste.min_bank_size = 3
    with pytest.raises(ValueError, match='never run'):
        fresh.before_train(runner)


def test_sim_config_errors(tiny_toy, tmp_path):
    cfg = toy_config(tiny_toy, str(tmp_path), CFG)
    with pytest.raises(ValueError, match='num_classes'):
        MODELS.build(
            dict(
                cfg.model, mask_head=dict(cfg.model.mask_head,
                                          num_classes=80)))
    for bad in (dict(semantic_tau=0.0), dict(sinkhorn_epsilon=-1.0),
                dict(prototype_momentum=1.0)):
        with pytest.raises(ValueError):
            MODELS.build(dict(cfg.model.mask_head, **bad))
    with pytest.raises(ValueError, match='stride 4'):
        MODELS.build(dict(cfg.model.data_preprocessor, mask_stride=8))
    # a bound bank needs the raw images that only the copy-paste
    # preprocessor keeps
    pre = dict(cfg.model.data_preprocessor, type='BoxSupDataPreprocessor')
    pre.pop('copy_paste')
    model = MODELS.build(dict(cfg.model, data_preprocessor=pre))
    EMATeacherHook().update(model, 0.0, 'copy')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    data = pseudo_collate([dataset[i] for i in range(2)])
    model.memory_bank = MemoryBank(length=1)
    data = model.data_preprocessor(data, training=True)
    with pytest.raises(KeyError, match='raw_image'):
        model(**data, mode='loss')


# -- pseudo-mask records for PseudoMaskQualityHook ---------------------------
def build_with_eval_masks(tiny_toy, tmp_path, **extra):
    """:func:`build` on the toy train images with their ground-truth masks
    packed as ``gt_instances.eval_masks``."""
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputsWithEvalMasks')
    ]
    return build(
        tiny_toy, tmp_path, **{
            'train_dataloader.dataset.ann_file':
            'annotations/instances_train_with_masks.json',
            'train_dataloader.dataset.pipeline': pipeline,
            'model.mask_head.pseudo_start_iters': 0,
            'model.mask_head.tau_high': 0.3,
            'model.mask_head.tau_low': 0.1,
            **extra
        })


def hand_pseudo_miou(records, samples):
    """PseudoMaskQualityHook.score in plain numpy."""
    import numpy as np
    ious, rows, valid_rows = [], 0, 0
    for rec, sample in zip(records, samples):
        pseudo = rec['masks'].cpu().numpy()
        valid = rec['valid'].cpu().numpy()
        rows += len(pseudo)
        valid_rows += int(valid.sum())
        if rec['eval_masks'] is None:
            continue
        h, w = pseudo.shape[-2:]
        strided = sample.gt_instances.eval_masks.masks.astype(bool)[:, 2::4,
                                                                    2::4]
        truth = np.zeros_like(pseudo)
        truth[:, :strided.shape[1], :strided.shape[2]] = strided[:, :h, :w]
        for p, t, v in zip(pseudo, truth, valid):
            if v and t.any():
                ious.append((p & t).sum() / (p | t).sum())
    return 100 * float(np.mean(ious)), valid_rows / rows


def test_eval_masks_enter_no_loss_and_pseudo_masks_are_recorded(
        tiny_toy, tmp_path):
    import copy

    from mmboxseg.engine.hooks import PseudoMaskQualityHook
    model, data = build_with_eval_masks(
        tiny_toy, tmp_path, **{'model.data_preprocessor.copy_paste': None})
    model.train()
    # the same batch without the evaluation masks
    bare = copy.deepcopy(data)
    for sample in bare['data_samples']:
        del sample.gt_instances.eval_masks
    twin = copy.deepcopy(model)
    # image 1 gets no sampled positive: it still has a record, all invalid
    orig = model.mask_head.sample_positives
    calls = []

    def sample_positives(info):
        calls.append(info)
        keep = orig(info)
        return keep[:0] if len(calls) % 3 == 2 else keep

    outs = []
    for net, batch in ((model, data), (twin, bare)):
        net.mask_head.sample_positives = sample_positives
        batch = net.data_preprocessor(batch, training=True)
        torch.manual_seed(1)
        losses = net(**batch, mode='loss')
        outs.append((losses, net.last_pseudo_masks, batch))
    (with_eval, records, batch), (without, bare_records, _) = outs
    # identical losses: no loss reads the evaluation masks
    assert with_eval.keys() == without.keys()
    for key in with_eval:
        assert torch.equal(with_eval[key], without[key]), key
    assert with_eval['loss_pseudo'] > 0  # the pseudo loss is on
    # one record per image, in batch order, rows = the image's ground truths
    samples = batch['data_samples']
    h, w = batch['inputs'].shape[-2:]
    assert len(records) == len(bare_records) == len(samples) == 3
    for i, (rec, bare_rec,
            sample) in enumerate(zip(records, bare_records, samples)):
        gt = sample.gt_instances
        assert rec['masks'].shape == (len(gt), h // 4, w // 4)
        assert rec['masks'].dtype == torch.bool and rec['stride'] == 4
        assert rec['eval_masks'] is gt.eval_masks
        assert bare_rec['eval_masks'] is None
        assert torch.equal(rec['masks'], bare_rec['masks'])
        if i == 1:
            assert 'sim_valid' not in gt and not rec['valid'].any()
            assert not rec['masks'].any()
        else:
            # bank rows (paste_source='instance'): the ground truths with a
            # positive, a superset of those with a non-empty pseudo mask
            assert (rec['valid'] <= gt.sim_valid).all()
            assert torch.equal(rec['valid'], rec['masks'].flatten(1).any(1))
    assert any(r['valid'].any() for r in records)
    # the hook's score is the numpy computation on gt[:, 2::4, 2::4]
    stats = PseudoMaskQualityHook.score(records)
    miou, frac = hand_pseudo_miou(records, samples)
    assert stats['pseudo_miou'] == pytest.approx(miou, rel=1e-6)
    assert stats['pseudo_valid_frac'] == pytest.approx(frac)
    assert PseudoMaskQualityHook.score(bare_records) is None


def test_records_without_any_positive(tiny_toy, tmp_path):
    model, data = build_with_eval_masks(
        tiny_toy, tmp_path, **{'model.data_preprocessor.copy_paste': None})
    model.train()
    model.mask_head.sample_positives = lambda info: torch.zeros(
        0, dtype=torch.long)
    data = model.data_preprocessor(data, training=True)
    model(**data, mode='loss')
    records = model.last_pseudo_masks
    assert len(records) == 3
    for rec, sample in zip(records, data['data_samples']):
        assert len(rec['masks']) == len(sample.gt_instances)
        assert not rec['valid'].any()
        assert rec['eval_masks'] is sample.gt_instances.eval_masks


def test_copy_paste_drops_eval_masks_of_pasted_images(tiny_toy, tmp_path):
    from mmboxseg.engine.hooks import PseudoMaskQualityHook
    model, data = build_with_eval_masks(
        tiny_toy, tmp_path, **{
            'model.data_preprocessor.copy_paste.prob': 1.0,
            'model.data_preprocessor.copy_paste.mask_thr': 0.0,
        })
    pre = model.data_preprocessor
    h, w = data['inputs'][0].shape[-2:]
    bank = MemoryBank(length=1)
    bank.push(
        torch.full((3, h, w), 7, dtype=torch.uint8),
        torch.tensor([[0., 0., w // 2 - 1, h - 1]]), torch.tensor([2]),
        torch.ones(1, h // 4, w // 4), torch.tensor([1.0]))
    pre.copy_paste.memory_bank = bank
    # nothing is pasted onto image 1
    paste, calls = pre.copy_paste, []

    def copy_paste(results):
        calls.append(results)
        if len(calls) == 2:
            results['gt_pasted'] = torch.zeros_like(
                results['gt_bboxes_labels'], dtype=torch.bool)
            return results
        return paste(results)

    copy_paste.prob_per = 'image'  # no batch draw: each call decides
    pre.copy_paste = copy_paste
    before = [s.gt_instances.eval_masks for s in data['data_samples']]
    rows = [len(s.gt_instances) for s in data['data_samples']]
    data = pre(data, training=True)
    samples = data['data_samples']
    for i, sample in enumerate(samples):
        gt = sample.gt_instances
        assert 'masks' not in gt
        if i == 1:
            assert not gt.pasted.any() and len(gt) == rows[i]
            assert gt.eval_masks is before[i]
            assert len(gt.eval_masks) == len(gt)
        else:
            assert gt.pasted.any() and 'eval_masks' not in gt
    # a training step on it: pasted images have no ground truth to score
    model.train()
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())
    records = model.last_pseudo_masks
    assert [r['eval_masks'] is None for r in records] == [True, False, True]
    stats = PseudoMaskQualityHook.score(records)
    if records[1]['valid'].any():
        miou, _ = hand_pseudo_miou(records, samples)
        assert stats['pseudo_miou'] == pytest.approx(miou, rel=1e-6)
