# Copyright (c) mmboxseg contributors. All rights reserved.
"""SIM end to end on the tiny toy set: box-only, resume restores prototypes,
bank and momentum encoder (and the next losses), mim train/test, two CPU
processes keep the prototypes identical."""
import os
import os.path as osp
import sys

import numpy as np
import torch

from mmboxseg.engine.hooks import MemoryBankHook
from mmboxseg.utils import register_all_modules
from ..conftest import REPO, as_cli, toy_cfg_options
from ..conftest import toy_config as shared_toy_config
from ..conftest import train
from .test_box_only_and_resume import _pickle_globals, mim_train_and_test, run
from .test_boxteacher_training import first_batch_losses, loss_history

register_all_modules()

CFG = osp.join(REPO, 'configs/sim/sim_r18_fpn_toy.py')
MIM = [sys.executable, '-m', 'mim']
# pseudo masks, prototype updates, bank pushes and pastes within a few
# iterations of an untrained model: the pseudo losses start after step 1,
# every box pixel updates the prototypes, low thresholds give non-empty
# pseudo masks and paste scores, a 2-entry bank is full after step 2 and
# steps 3-4 paste
EARLY_SIM = {
    'model.mask_head.pseudo_start_iters': 1,
    'model.mask_head.prototype_pos_thr': 0.0,
    'model.mask_head.tau_high': 0.3,
    'model.mask_head.tau_low': 0.1,
    'model.data_preprocessor.copy_paste.prob': 1.0,
    'model.data_preprocessor.copy_paste.mask_thr': 0.0,
    'model.mask_head.paste_score_thr': 0.0,
    'custom_hooks.1.bank.length': 2,
    'train_cfg.val_interval': 100,
}


def toy_config(data_root, work_dir, **extra):
    return shared_toy_config(data_root, work_dir, CFG, **extra)


def bank_of(runner):
    hooks = [h for h in runner.hooks if isinstance(h, MemoryBankHook)]
    assert len(hooks) == 1
    return hooks[0].bank


def test_sim_never_reads_masks(tiny_toy, tmp_path):
    cfg = toy_config(
        tiny_toy, str(tmp_path), **{
            **EARLY_SIM, 'model.data_preprocessor.copy_paste': None
        })
    cfg.model.mask_head.pseudo_start_iters = 0
    ref = first_batch_losses(cfg)
    cfg.train_dataloader.dataset.ann_file = \
        'annotations/instances_train_with_masks.json'
    got = first_batch_losses(cfg)
    assert got == ref
    assert got['loss_pseudo'] > 0


def test_resume_restores_prototypes_bank_encoder_and_losses(
        tiny_toy, tmp_path):
    full = train(
        toy_config(tiny_toy, str(tmp_path / 'full'), max_iters=4, **EARLY_SIM))
    train(
        toy_config(tiny_toy, str(tmp_path / 'part'), max_iters=2, **EARLY_SIM))
    ckpt = str(tmp_path / 'part' / 'iter_2.pth')
    state = torch.load(ckpt)  # weights_only=True
    assert len(state['memory_bank']['entries']) == 2
    assert 'mask_head.prototypes' in state['state_dict']
    assert b'getattr' not in _pickle_globals(ckpt)
    resumed = train(
        toy_config(tiny_toy, str(tmp_path / 'part'), max_iters=4, **EARLY_SIM),
        resume_from=ckpt)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    # the prototypes moved and the encoder is an average, not a copy
    assert int(a['mask_head.prototype_updates']) == 4
    assert not torch.equal(a['teacher.backbone.conv1.weight'],
                           a['backbone.conv1.weight'])
    bank_a, bank_b = bank_of(full), bank_of(resumed)
    assert bank_a.num_pushed == bank_b.num_pushed > 2
    assert torch.equal(bank_a.generator.get_state(),
                       bank_b.generator.get_state())
    for ea, eb in zip(bank_a.entries, bank_b.entries):
        for key in ea:
            assert torch.equal(ea[key], eb[key]), key
    for key in ('loss', 'loss_pseudo', 'loss_paste', 'loss_mask_project',
                'pseudo_fg_fraction'):
        want = loss_history(full, key)[2:4]
        got = loss_history(resumed, key)[-2:]
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=key)
    assert min(loss_history(full, 'loss_paste')[2:4]) > 0
    assert min(loss_history(full, 'loss_pseudo')[1:4]) > 0


def test_mim_train_and_test_sim(tiny_toy, tmp_path):
    out = mim_train_and_test(CFG, tiny_toy, str(tmp_path / 'mim'))
    assert 'memory bank: 0/50 entries' in out


def test_two_process_prototypes_stay_identical(tiny_toy, tmp_path):
    work_dir = str(tmp_path / 'dist')
    opts = toy_cfg_options(
        tiny_toy,
        work_dir,
        max_iters=3,
        **{
            **EARLY_SIM, 'model.mask_head.sync_check_interval': 1
        })
    env = dict(os.environ, PORT='29565', OMP_NUM_THREADS='1')
    out = run(
        ['bash', 'tools/dist_train.sh', CFG, '2'] + as_cli(opts), env=env)
    assert 'Iter(train) [3/3]' in out
    # checked after every update; a difference would have raised
    for k in (1, 2, 3):
        assert f'prototypes identical on 2 ranks after {k} updates' in out
