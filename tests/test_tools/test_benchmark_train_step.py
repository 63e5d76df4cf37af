# Copyright (c) mmboxseg contributors. All rights reserved.
"""benchmark_train_step.py runs a teacher-student config (its EMA hook
included) on synthetic images of a given size."""
import os.path as osp
from argparse import Namespace

from mmboxseg.utils import register_all_modules
from ..conftest import REPO, load_tool

register_all_modules()


def test_times_boxteacher_on_synthetic_images():
    tool = load_tool('tools/analysis_tools/benchmark_train_step.py',
                     'benchmark_train_step')
    args = Namespace(
        seed=0, device='cpu', synthetic='96x64', warmup=1, iters=2)
    result = tool.time_config(
        osp.join(REPO, 'configs/boxteacher/boxteacher_r18_fpn_toy.py'), args)
    assert result['data'] == '96x64'
    assert result['iters'] == 2 and result['median_ms'] > 0
    assert result['ema_updates'] == 4  # start + one per step


def test_synthetic_data_file(tmp_path):
    tool = load_tool('tools/analysis_tools/benchmark_train_step.py',
                     'benchmark_train_step')
    classes = tool.write_synthetic_data(str(tmp_path), (40, 60), 3, 5)
    assert classes == tuple(f'class_{i}' for i in range(5))
    from pycocotools.coco import COCO
    coco = COCO(str(tmp_path / 'train.json'))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 30
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = ann['bbox']
        assert 0 <= x and x + w <= 60 and 0 <= y and y + h <= 40
    assert osp.isfile(str(tmp_path / 'images' / '0002.jpg'))
