# Copyright (c) mmboxseg contributors. All rights reserved.
"""End-to-end guarantees on a tiny toy set: box-only, resume, checkpoint
loading with torch's weights_only, the model zoo commands."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

from mmboxseg.utils import register_all_modules
from ..conftest import REPO, as_cli, toy_cfg_options
from ..conftest import toy_config as shared_toy_config
from ..conftest import train

register_all_modules()

TOY_CFG = osp.join(REPO, 'configs/boxinst/boxinst_r18_fpn_toy.py')
# `python -m mim`: the `mim` command may not be on PATH yet (pyenv shims)
MIM = [sys.executable, '-m', 'mim']


def toy_config(data_root, work_dir, **extra):
    return shared_toy_config(data_root, work_dir, TOY_CFG, **extra)


def batch_losses(cfg):
    """Losses of the first training batch, deterministic."""
    from mmengine.dataset import pseudo_collate

    from mmboxseg.registry import DATASETS, MODELS
    torch.manual_seed(0)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    model = MODELS.build(cfg.model)
    model.train()
    torch.manual_seed(0)
    data = pseudo_collate([dataset[i] for i in range(3)])
    data = model.data_preprocessor(data, training=True)
    return {k: v.item() for k, v in model(**data, mode='loss').items()}


def test_box_only_losses_ignore_masks_in_the_file(tiny_toy, tmp_path):
    """Same losses whether or not the training file carries masks."""
    with_masks = osp.join(tiny_toy, 'annotations/instances_train_with_masks.'
                          'json')
    boxes_only = osp.join(tiny_toy, 'annotations/instances_train.json')
    content = json.load(open(with_masks))
    assert all('segmentation' in a for a in content['annotations'])
    assert not any('segmentation' in a
                   for a in json.load(open(boxes_only))['annotations'])
    cfg = toy_config(tiny_toy, str(tmp_path))
    pipeline = cfg.train_dataloader.dataset.pipeline
    next(t for t in pipeline if t.type == 'RandomFlip').prob = 0.0
    cfg.train_dataloader.dataset.ann_file = 'annotations/instances_train.json'
    ref = batch_losses(cfg)
    cfg.train_dataloader.dataset.ann_file = \
        'annotations/instances_train_with_masks.json'
    got = batch_losses(cfg)
    assert got == ref
    assert {'loss_mask_project', 'loss_mask_pairwise'} <= set(got)
    # and the masks would have changed a mask-supervised model's losses
    cfg.model.mask_head.supervision = 'mixed'
    cfg.model.data_preprocessor.supervision = 'mixed'
    cfg.model.data_preprocessor.pad_mask = True
    next(t for t in pipeline if t.type == 'LoadAnnotations').with_mask = True
    mixed = batch_losses(cfg)
    assert mixed['loss_mask'] > 0 and mixed != got


def test_resume_matches_an_uninterrupted_run(tiny_toy, tmp_path):
    full = train(
        toy_config(
            tiny_toy,
            str(tmp_path / 'full'),
            max_iters=4,
            **{'train_cfg.val_interval': 100}))
    part = toy_config(
        tiny_toy,
        str(tmp_path / 'part'),
        max_iters=4,
        **{'train_cfg.val_interval': 100})
    part.train_cfg.max_iters = 2
    train(part)
    ckpt = str(tmp_path / 'part' / 'iter_2.pth')
    # checkpoints load with weights_only=True (torch's default), and hold
    # no `getattr` global
    state = torch.load(ckpt)
    assert state['meta']['iter'] == 2
    assert b'getattr' not in _pickle_globals(ckpt)
    resumed = train(
        toy_config(
            tiny_toy,
            str(tmp_path / 'part'),
            max_iters=4,
            **{'train_cfg.val_interval': 100}),
        resume_from=ckpt)
    a = full.model.state_dict()
    b = resumed.model.state_dict()
    assert int(b['mask_head._iter']) == 4
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def _pickle_globals(ckpt):
    import pickletools
    import zipfile
    with zipfile.ZipFile(ckpt) as z:
        data = z.read([n for n in z.namelist() if n.endswith('data.pkl')][0])
    return b' '.join(
        str(arg).encode() for op, arg, _ in pickletools.genops(data)
        if op.name in ('GLOBAL', 'STACK_GLOBAL'))


def test_weights_only_still_refuses_arbitrary_globals(tmp_path):
    import mmboxseg  # noqa: F401 (registers the safe globals)
    path = tmp_path / 'evil.pth'
    torch.save({'x': os.getcwd}, str(path))  # a callable global
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(path))
    path2 = tmp_path / 'getattr.pth'
    torch.save({'f': getattr(str, 'upper')}, str(path2))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(path2))


def run(cmd, cwd=REPO, timeout=600, env=None):
    out = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def mim_train_and_test(config, data_root, work_dir, **extra):
    """`mim train` a toy config for 2 iterations, then `mim test` its
    checkpoint; returns the training output for config-specific checks."""
    # an untrained model scores below the default 0.05 threshold
    opts = toy_cfg_options(
        data_root,
        work_dir,
        max_iters=2,
        **{
            'model.test_cfg.score_thr': 0.0,
            **extra
        })
    out = run([*MIM, 'train', 'mmboxseg', config] + as_cli(opts))
    assert 'Iter(train) [2/2]' in out
    ckpt = osp.join(work_dir, 'iter_2.pth')
    test_out = run([*MIM, 'test', 'mmboxseg', config, '--checkpoint', ckpt] +
                   as_cli(opts))
    assert 'coco/segm_mAP' in test_out and 'coco/bbox_mAP' in test_out
    return out


def test_mim_train_and_test(tiny_toy, tmp_path):
    work_dir = str(tmp_path / 'mim')
    # an untrained model scores below the default 0.05 threshold
    opts = toy_cfg_options(
        tiny_toy, work_dir, max_iters=2, **{'model.test_cfg.score_thr': 0.0})
    out = run([
        *MIM, 'train', 'mmboxseg', 'configs/boxinst/'
        'boxinst_r18_fpn_toy.py'
    ] + as_cli(opts))
    assert 'Iter(train) [2/2]' in out
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)
    # `--resume` without a path picks the latest checkpoint of the work dir
    more = dict(opts, **{'train_cfg.max_iters': 3})
    out = run([
        *MIM, 'train', 'mmboxseg', 'configs/boxinst/'
        'boxinst_r18_fpn_toy.py', '--resume'
    ] + as_cli(more))
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/3]' in out
    out = run([
        *MIM, 'test', 'mmboxseg', 'configs/boxinst/'
        'boxinst_r18_fpn_toy.py', '--checkpoint', ckpt
    ] + as_cli(opts))
    assert 'coco/segm_mAP' in out and 'coco/bbox_mAP' in out
    # mim also finds the config by name from another directory, and
    # forwards --out; the box baseline evaluates those predictions
    preds = str(tmp_path / 'preds.pkl')
    out = run(
        [
            *MIM, 'test', 'mmboxseg', 'boxinst_r18_fpn_toy.py', '--checkpoint',
            ckpt, '--out', preds
        ] + as_cli(opts),
        cwd=str(tmp_path))
    assert 'coco/segm_mAP' in out
    out = run([
        sys.executable, 'tools/analysis_tools/eval_box_baseline.py',
        'configs/boxinst/boxinst_r18_fpn_toy.py', preds, '--ann-file',
        osp.join(tiny_toy, 'annotations/instances_test.json')
    ])
    metrics = json.loads(
        [line for line in out.splitlines() if line.startswith('{')][-1])
    assert 0 <= metrics['coco/segm_mAP'] <= 1


def test_two_process_cpu_training(tiny_toy, tmp_path):
    work_dir = str(tmp_path / 'dist')
    opts = toy_cfg_options(
        tiny_toy, work_dir, max_iters=2, **{'train_cfg.val_interval': 100})
    env = dict(os.environ, PORT='29561', OMP_NUM_THREADS='1')
    out = run(
        ['bash', 'tools/dist_train.sh', TOY_CFG, '2'] + as_cli(opts), env=env)
    assert 'Iter(train) [2/2]' in out
    log = open(
        sorted(
            osp.join(work_dir, d, d + '.log') for d in os.listdir(work_dir)
            if osp.isdir(osp.join(work_dir, d)))[-1]).read()
    assert 'world_size: 2' in log or "'world_size': 2" in log or \
        'Distributed launcher: pytorch' in log
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
