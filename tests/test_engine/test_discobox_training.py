# Copyright (c) mmboxseg contributors. All rights reserved.
"""DiscoBox end to end on the tiny toy set: resume restores teacher, object
bank and gates (and the next losses), mim train/test (segmentation and
PCK), two CPU processes."""
import os
import os.path as osp

import numpy as np
import torch

from mmboxseg.engine.hooks import MemoryBankHook
from mmboxseg.utils import register_all_modules
from ..conftest import REPO, as_cli, load_tool, toy_cfg_options
from ..conftest import toy_config as shared_toy_config
from ..conftest import train
from .test_box_only_and_resume import (MIM, _pickle_globals,
                                       mim_train_and_test, run)
from .test_boxteacher_training import loss_history

register_all_modules()

CFG = osp.join(REPO, 'configs/discobox/discobox_solov2_r18_fpn_toy.py')
PCK_CFG = osp.join(REPO, 'configs/discobox/discobox_solov2_r18_fpn_toy_pck.py')
# every DiscoBox term within a few iterations of an untrained model: gates
# open from step 0, the EMA teacher from step 1, a bank that keeps and
# returns every object, one partner enough
EARLY = {
    'model.gates.mode': 'iteration',
    'model.gates.ts_start_iter': 0,
    'model.gates.corr_start_iter': 0,
    'model.gates.teacher_start_iter': 1,
    'custom_hooks.0.start_iter': 1,
    'custom_hooks.1.bank.min_size': 0,
    'custom_hooks.1.bank.fg_iou_thresh': 0.0,
    'custom_hooks.1.bank.bg_iou_thresh': 0.0,
    'custom_hooks.1.bank.appear_thresh': -1.0,
    'custom_hooks.1.bank.ratio_range': (0.0, 100.0),
    'model.mask_head.correspondence.min_retrieval': 1,
    'train_cfg.val_interval': 100,
}


def toy_config(data_root, work_dir, **extra):
    return shared_toy_config(data_root, work_dir, CFG, **extra)


def bank_of(runner):
    hooks = [h for h in runner.hooks if isinstance(h, MemoryBankHook)]
    assert len(hooks) == 1
    return hooks[0].bank


def test_resume_restores_teacher_bank_gates_and_losses(tiny_toy, tmp_path):
    full = train(
        toy_config(tiny_toy, str(tmp_path / 'full'), max_iters=4, **EARLY))
    train(toy_config(tiny_toy, str(tmp_path / 'part'), max_iters=2, **EARLY))
    ckpt = str(tmp_path / 'part' / 'iter_2.pth')
    state = torch.load(ckpt)  # weights_only=True
    assert state['memory_bank']['num_pushed'] > 0
    assert int(state['state_dict']['train_iters']) == 2
    assert 'teacher.mask_head.conv_kernel.weight' in state['state_dict']
    assert b'getattr' not in _pickle_globals(ckpt)
    resumed = train(
        toy_config(tiny_toy, str(tmp_path / 'part'), max_iters=4, **EARLY),
        resume_from=ckpt)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert int(a['train_iters']) == 4
    # the teacher is an average, not a copy, and counted its updates
    assert int(a['ema_updates']) == 5
    assert not torch.equal(a['teacher.mask_head.conv_kernel.weight'],
                           a['mask_head.conv_kernel.weight'])
    bank_a, bank_b = bank_of(full), bank_of(resumed)
    assert bank_a.num_pushed == bank_b.num_pushed > 0
    assert sorted(bank_a.queues) == sorted(bank_b.queues)
    for label in bank_a.queues:
        for key in ('feats', 'masks', 'boxes'):
            assert torch.equal(bank_a.queues[label][key],
                               bank_b.queues[label][key]), key
    for key in ('loss', 'loss_mask', 'loss_ts', 'loss_corr', 'loss_ts_corr',
                'corr_queries', 'mil_running_avg', 'gate_teacher'):
        want = loss_history(full, key)[2:4]
        got = loss_history(resumed, key)[-2:]
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=key)
    assert min(loss_history(full, 'loss_corr')[1:4]) > 0
    assert loss_history(full, 'gate_teacher') == [0.0, 1.0, 1.0, 1.0]


def test_mim_train_and_test_discobox_and_pck(tiny_toy, tmp_path):
    work_dir = str(tmp_path / 'mim')
    out = mim_train_and_test(
        CFG, tiny_toy, work_dir, **{
            'model.test_cfg.mask_thr': 0.0,
            'model.test_cfg.filter_thr': 0.0
        })
    assert 'gate_ts: 0.0000' in out and 'memory bank: 0/400 entries' in out
    pairs = str(tmp_path / 'pairs')
    load_tool('tools/misc/make_toy_correspondence_pairs.py',
              'make_toy_correspondence_pairs').generate(
                  pairs, num_pairs=4, img_size=64, num_keypoints=5)
    opts = {
        'test_dataloader.dataset.data_root': pairs + '/',
        'test_dataloader.num_workers': 0,
        'test_dataloader.dataset.pipeline.0.scale': (64, 64),
        'work_dir': work_dir
    }
    test_out = run([
        *MIM, 'test', 'mmboxseg', PCK_CFG, '--checkpoint',
        osp.join(work_dir, 'iter_2.pth')
    ] + as_cli(opts))
    assert 'PCK over 4 pairs' in test_out
    assert 'pck/PCK@0.1_bbox' in test_out and 'pck/PCK@0.1_image' in test_out


def test_two_process_training(tiny_toy, tmp_path):
    work_dir = str(tmp_path / 'dist')
    opts = toy_cfg_options(
        tiny_toy,
        work_dir,
        max_iters=3,
        **{
            **EARLY,
            'custom_hooks.0.check_sync_interval': 1,
            # dist_train.sh splits arguments on spaces
            'custom_hooks.1.bank.ratio_range': '[0.0,100.0]',
        })
    env = dict(os.environ, PORT='29566', OMP_NUM_THREADS='1')
    out = run(
        ['bash', 'tools/dist_train.sh', CFG, '2'] + as_cli(opts), env=env)
    assert 'Iter(train) [3/3]' in out
    # teachers compared after every update; a difference would have raised
    assert 'teachers identical on 2 ranks after 4 updates' in out
    assert 'gate_corr: 1.0000' in out


# -- configs against the release's numbers -----------------------------------
def _cfg(name):
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, 'configs/discobox', name))


def test_coco_config_is_the_release():
    """configs/discobox/discobox_solov2_r50_fpn_3x.py and the head of the
    release."""
    cfg = _cfg('discobox_solov2_r50_fpn_3x_coco.py')
    head = cfg.model.mask_head
    assert head.loss_corr.release_double_softmax is True
    assert head.loss_corr.loss_weight == 1.0
    assert head.correspondence.solve_on == 'student'
    assert head.correspondence.bank_push == 'interleaved'
    assert head.correspondence.window == 9
    assert head.mean_field.base == 0.1
    # single_stage_wsis.py: teacher copied once cnt > 13000, used from the
    # next step; gate and EMA hook agree
    assert cfg.model.gates.teacher_start_iter == 13002
    assert cfg.custom_hooks[0].start_iter == 13002
    assert (cfg.model.gates.ts_thresh, cfg.model.gates.corr_thresh) == (0.3,
                                                                        0.2)
    bank = cfg.custom_hooks[1].bank
    assert bank.min_size == 128 and bank.iou == 'release'
    assert cfg.model.test_cfg.mask_thr == 0.4
    assert cfg.optim_wrapper.optimizer.lr == 0.01


def test_r101_dcn_config_is_the_release():
    """discobox_solov2_r101_dcn_fpn_3x: DCNv2 in the towers and in every
    conv of the mask-feature branch; loss_corr 0.1."""
    from mmcv.cnn import ConvModule
    from mmcv.ops import ModulatedDeformConv2dPack
    from mmdet.models.dense_heads.solov2_head import MaskFeatModule
    cfg = _cfg('discobox_solov2_r101-dcn_fpn_ms-3x_coco.py')
    head = cfg.model.mask_head
    assert head.loss_corr.loss_weight == 0.1
    assert head.dcn_cfg.type == 'DCNv2' and head.dcn_apply_to_all_conv
    assert head.mask_feature_head.conv_cfg == dict(type='DCNv2')
    branch = MaskFeatModule(**dict(
        head.mask_feature_head,
        in_channels=8,
        feat_channels=4,
        out_channels=4,
        norm_cfg=None))
    # every ConvModule of the branch, the 1x1 output conv included
    convs = [m.conv for m in branch.modules() if isinstance(m, ConvModule)]
    assert len(convs) == 1 + 1 + 2 + 3 + 1
    assert all(isinstance(m, ModulatedDeformConv2dPack) for m in convs)


def test_voc_config_is_the_release():
    """discobox_solov2_voc_r50_fpn_6x: LR 0.01 on 4 GPUs x 2 images, not
    scaled with the batch."""
    cfg = _cfg('discobox_solov2_r50_fpn_6x_voc-aug.py')
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.enable is False
    assert cfg.model.test_cfg.mask_thr == 0.5
    assert cfg.param_scheduler[1].milestones == [54, 66]


def test_paper_text_and_toy_configs():
    paper = _cfg('discobox_solov2_r50_fpn_3x_coco_paper-text.py')
    head = paper.model.mask_head
    assert head.loss_corr.release_double_softmax is False
    assert head.loss_corr.loss_weight == 0.1
    assert head.correspondence.method == 'sinkhorn'
    assert head.correspondence.solve_on == 'teacher'
    assert head.correspondence.bank_push == 'after_losses'
    assert head.mean_field.base == 0.3
    bank = paper.custom_hooks[1].bank
    assert (bank.retrieval, bank.max_retrieval) == ('random', 10)
    assert 31 < bank.min_size < 32
    # the toy config inherits the defaults and scales the bank's push rule
    toy = _cfg('discobox_solov2_r18_fpn_toy.py')
    assert toy.model.mask_head.loss_corr.release_double_softmax is True
    assert toy.model.mask_head.correspondence.solve_on == 'student'
    assert toy.custom_hooks[1].bank.min_size == 20
    assert toy.custom_hooks[1].bank.iou == 'release'
    assert toy.model.gates.teacher_start_iter == 100
