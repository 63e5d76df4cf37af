# Copyright (c) mmboxseg contributors. All rights reserved.
import importlib.util
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(relpath, name):
    """Import a script of tools/ (not a package) by path."""
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def tiny_toy(tmp_path_factory):
    """A tiny toy data set (12 train / 6 val / 6 test images of 64 px) plus
    a train file that carries the masks (instances_train_with_masks.json
    is written by the generator as well)."""
    out = tmp_path_factory.mktemp('toy')
    toy = load_tool('tools/misc/make_toy_dataset.py', 'make_toy_dataset')
    toy.generate(
        str(out), seed=3, num_train=12, num_val=6, num_test=6, img_size=64)
    return str(out)


def toy_cfg_options(data_root, work_dir, max_iters=4, **extra):
    """--cfg-options that shrink configs/boxinst/boxinst_r18_fpn_toy.py."""
    opts = {
        'train_dataloader.dataset.data_root':
        data_root + '/',
        'val_dataloader.dataset.data_root':
        data_root + '/',
        'test_dataloader.dataset.data_root':
        data_root + '/',
        'val_evaluator.ann_file':
        osp.join(data_root, 'annotations/instances_val.json'),
        'test_evaluator.ann_file':
        osp.join(data_root, 'annotations/instances_test.json'),
        'train_dataloader.batch_size':
        2,
        'train_dataloader.num_workers':
        0,
        'train_dataloader.persistent_workers':
        False,
        'val_dataloader.num_workers':
        0,
        'val_dataloader.persistent_workers':
        False,
        'test_dataloader.num_workers':
        0,
        'test_dataloader.persistent_workers':
        False,
        'train_cfg.max_iters':
        max_iters,
        'train_cfg.val_interval':
        max_iters,
        'default_hooks.checkpoint.interval':
        2,
        'default_hooks.logger.interval':
        1,
        'work_dir':
        work_dir,
    }
    opts.update(extra)
    return opts


def toy_config(data_root, work_dir, config, **extra):
    """A toy config shrunk by :func:`toy_cfg_options`, quiet, no vis
    backends."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(toy_cfg_options(data_root, work_dir, **extra))
    cfg.log_level = 'WARNING'
    cfg.visualizer = dict(type='DetLocalVisualizer', vis_backends=[])
    return cfg


def train(cfg, resume_from=None):
    """Train ``cfg`` in this process, optionally resuming a checkpoint."""
    from mmengine.runner import Runner
    if resume_from is not None:
        cfg.resume = True
        cfg.load_from = resume_from
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def as_cli(opts):
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


def read_json(path):
    with open(path) as f:
        return json.load(f)
