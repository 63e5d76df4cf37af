# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxTeacher end to end on the tiny toy set: box-only, resume restores the
teacher and the next losses, mim train/test, two CPU processes."""
import os
import os.path as osp
import sys

import numpy as np
import torch

from mmboxseg.engine.hooks import EMATeacherHook
from mmboxseg.utils import register_all_modules
from ..conftest import REPO, as_cli, toy_cfg_options
from ..conftest import toy_config as shared_toy_config
from ..conftest import train
from .test_box_only_and_resume import _pickle_globals, mim_train_and_test, run

register_all_modules()

CFG = osp.join(REPO, 'configs/boxteacher/boxteacher_r18_fpn_toy.py')
MIM = [sys.executable, '-m', 'mim']
# make pseudo masks (and so their losses) appear within a few iterations
EARLY_PSEUDO = {
    'model.test_cfg.score_thr': 0.0,
    'model.pseudo_cfg.iou_thr': 0.0,
    'model.mask_head.pseudo_warmup_iters': 1,
    'train_cfg.val_interval': 100,
}


def toy_config(data_root, work_dir, **extra):
    return shared_toy_config(data_root, work_dir, CFG, **extra)


def first_batch_losses(cfg):
    from mmengine.dataset import pseudo_collate

    from mmboxseg.registry import DATASETS, MODELS
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    model = MODELS.build(cfg.model)
    EMATeacherHook().update(model, 0.0, 'copy')
    model.train()
    data = pseudo_collate([dataset[i] for i in range(3)])
    data = model.data_preprocessor(data, training=True)
    return {k: v.item() for k, v in model(**data, mode='loss').items()}


def test_boxteacher_never_reads_masks(tiny_toy, tmp_path):
    cfg = toy_config(tiny_toy, str(tmp_path), **EARLY_PSEUDO)
    cfg.train_dataloader.dataset.ann_file = 'annotations/instances_train.json'
    ref = first_batch_losses(cfg)
    cfg.train_dataloader.dataset.ann_file = \
        'annotations/instances_train_with_masks.json'
    got = first_batch_losses(cfg)
    assert got == ref
    assert got['loss_pseudo_mask'] > 0 and got['pseudo_assigned'] == 1.0


def loss_history(runner, key):
    values, _ = runner.message_hub.get_scalar(f'train/{key}').data
    return values.tolist()


def test_resume_restores_the_teacher_and_the_next_losses(tiny_toy, tmp_path):
    full = train(
        toy_config(
            tiny_toy, str(tmp_path / 'full'), max_iters=4, **EARLY_PSEUDO))
    part = toy_config(
        tiny_toy, str(tmp_path / 'part'), max_iters=2, **EARLY_PSEUDO)
    train(part)
    ckpt = str(tmp_path / 'part' / 'iter_2.pth')
    state = torch.load(ckpt)  # weights_only=True
    assert 'teacher.backbone.conv1.weight' in state['state_dict']
    assert int(state['state_dict']['ema_updates']) == 3  # start + 2 steps
    assert b'getattr' not in _pickle_globals(ckpt)
    resumed = train(
        toy_config(
            tiny_toy, str(tmp_path / 'part'), max_iters=4, **EARLY_PSEUDO),
        resume_from=ckpt)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b)
    teacher_keys = [k for k in a if k.startswith('teacher.')]
    assert len(teacher_keys) > 100
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    # the teacher is an average, not a copy of the student
    assert not torch.equal(a['teacher.backbone.conv1.weight'],
                           a['backbone.conv1.weight'])
    for key in ('loss', 'loss_pseudo_mask', 'loss_pseudo_affinity',
                'loss_mask_project', 'pseudo_score'):
        want = loss_history(full, key)[2:4]
        got = loss_history(resumed, key)[-2:]
        assert len(want) == 2
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=key)
    assert min(loss_history(full, 'loss_pseudo_mask')[2:4]) > 0


def test_mim_train_and_test_boxteacher(tiny_toy, tmp_path):
    out = mim_train_and_test(CFG, tiny_toy, str(tmp_path / 'mim'))
    assert 'EMATeacherHook: teacher initialised from the student' in out


def test_two_process_teachers_stay_identical(tiny_toy, tmp_path):
    work_dir = str(tmp_path / 'dist')
    opts = toy_cfg_options(
        tiny_toy,
        work_dir,
        max_iters=3,
        **{
            'train_cfg.val_interval': 100,
            'custom_hooks.0.check_sync_interval': 1
        })
    env = dict(os.environ, PORT='29563', OMP_NUM_THREADS='1')
    out = run(
        ['bash', 'tools/dist_train.sh', CFG, '2'] + as_cli(opts), env=env)
    assert 'Iter(train) [3/3]' in out
    # every update was checked; a difference would have raised
    assert 'EMATeacherHook: teachers identical on 2 ranks after 4 updates' \
        in out
