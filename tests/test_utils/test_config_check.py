# Copyright (c) mmboxseg contributors. All rights reserved.
"""Unknown config keys are reported in the user's words: the type written
in the config, the key, the nearest valid key and the config file."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmboxseg.utils import (ConfigKeyError, check_config_keys, load_config,
                            register_all_modules)
from ..conftest import REPO

register_all_modules()

TOY_CFG = osp.join(REPO, 'configs/boxinst/boxinst_r18_fpn_toy.py')


def test_misspelt_mask_head_key_names_the_users_class():
    with pytest.raises(ConfigKeyError) as err:
        load_config(TOY_CFG, {'model.mask_head.pairwise_sze': 3})
    msg = str(err.value)
    assert msg.startswith(TOY_CFG + ': model.mask_head.pairwise_sze: ')
    assert 'BoxSupMaskHead has no argument' in msg
    assert 'CondInstMaskHead' not in msg.split('(valid')[0]
    assert "did you mean 'loss_pairwise'?" in msg


def test_misspelt_preprocessor_key_names_the_users_class():
    with pytest.raises(ConfigKeyError) as err:
        load_config(TOY_CFG, {'model.data_preprocessor.pairwise_sze': 3})
    msg = str(err.value)
    assert 'BoxSupDataPreprocessor has no argument' in msg
    assert "did you mean 'pairwise_size'?" in msg
    assert 'DetDataPreprocessor has' not in msg


def test_keys_of_mixins_and_nested_modules_are_valid_and_checked():
    # BoxTeacher = EMATeacherMixin + BoxInst: both classes' keys are valid
    cfg = load_config(
        osp.join(REPO, 'configs/boxteacher/boxteacher_r18_fpn_toy.py'))
    assert cfg.model.type == 'BoxTeacher'
    with pytest.raises(ConfigKeyError, match='PairwiseAffinityLoss'):
        load_config(TOY_CFG, {'model.mask_head.loss_pairwise.kernel_sise': 3})
    with pytest.raises(ConfigKeyError, match=r'pipeline\[1\]\.with_msk'):
        load_config(TOY_CFG,
                    {'train_dataloader.dataset.pipeline.1.with_msk': True})


@pytest.mark.parametrize(
    'config',
    sorted(
        p
        for p in glob.glob(osp.join(REPO, 'configs/**/*.py'), recursive=True)
        if '_base_' not in p))
def test_every_shipped_config_passes_the_check(config):
    check_config_keys(Config.fromfile(config), config)


def test_train_tool_reports_one_line_without_traceback(tmp_path):
    out = subprocess.run([
        sys.executable, 'tools/train.py', TOY_CFG, '--work-dir',
        str(tmp_path), '--cfg-options', 'model.mask_head.pairwise_sze=3'
    ],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 1
    assert 'Traceback' not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ' + TOY_CFG)
    assert 'BoxSupMaskHead' in lines[0] and 'pairwise_sze' in lines[0]


def test_mmboxseg_types_build_from_mmdet_scope_with_their_prefix():
    """From mmdet's own tools (``mim train mmdet`` with
    ``custom_imports=dict(imports=['mmboxseg'])``), an mmboxseg type is
    found when written with its scope, as the README says."""
    from mmdet.registry import MODELS as MMDET_MODELS
    assert MMDET_MODELS.get('BoxSupBboxHead') is None
    assert MMDET_MODELS.get('mmboxseg.BoxSupBboxHead') is not None
