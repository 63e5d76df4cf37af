# Copyright (c) mmboxseg contributors. All rights reserved.
"""Registry scopes, config inheritance both ways, and config errors."""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmboxseg
from mmboxseg.registry import MODELS
from mmboxseg.utils import adopt_mmboxseg_scope, register_all_modules

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

register_all_modules()

SWAP_HEAD = '''
_base_ = 'mmdet::condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py'
model = dict(
    data_preprocessor=dict(_delete_=True, type='BoxSupDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                           pad_size_divisor=32, bottom_pixels_removed=0),
    backbone=dict(depth=18, init_cfg=None, frozen_stages=-1,
                  norm_eval=False),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32,
                   stacked_convs=1),
    mask_head=dict(
        type='BoxSupMaskHead',
        mask_feature_head=dict(in_channels=32, feat_channels=16,
                               num_stacked_convs=1),
        loss_project=dict(type='BoxProjectionLoss', loss_weight=2.0)))
'''


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def tiny_batch():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    samples = []
    for _ in range(2):
        s = DetDataSample(
            metainfo=dict(
                img_shape=(64, 64),
                ori_shape=(64, 64),
                pad_shape=(64, 64),
                scale_factor=(1.0, 1.0),
                batch_input_shape=(64, 64)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[4.0, 6.0, 40.0, 30.0],
                                 [20.0, 20.0, 60.0, 62.0]]),
            labels=torch.tensor([0, 2]))
        samples.append(s)
    inputs = [
        torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)
    ]
    return dict(inputs=inputs, data_samples=samples)


def test_mmdet_base_with_mmboxseg_head_builds_and_runs(tmp_path):
    cfg = Config.fromfile(write(tmp_path, 'swap.py', SWAP_HEAD))
    # the trap: the inherited model dict is scoped to mmdet ...
    assert cfg.model._scope_ == 'mmdet'
    with pytest.raises(KeyError, match='BoxSupMaskHead|BoxSupData'):
        MODELS.build(cfg.model)
    # ... and mmboxseg's tools re-scope it to mmboxseg, a child of mmdet
    adopt_mmboxseg_scope(cfg)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'CondInst'  # mmdet's detector
    assert type(model.mask_head).__name__ == 'BoxSupMaskHead'
    assert model.mask_head.loss_project.loss_weight == 2.0
    model.train()
    data = model.data_preprocessor(tiny_batch(), training=True)
    losses = model(**data, mode='loss')
    assert {'loss_cls', 'loss_mask_project',
            'loss_mask_pairwise'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_own_configs_carry_their_scope():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/boxinst/boxinst_r18_fpn_toy.py'))
    assert cfg.default_scope == 'mmboxseg'
    assert cfg.model._scope_ == 'mmboxseg'
    assert cfg.train_dataloader.dataset._scope_ == 'mmboxseg'
    # no re-scoping needed: builds as another project would build it
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    assert type(model.mask_head).__name__ == 'BoxSupMaskHead'


def test_other_projects_inherit_mmboxseg_configs(tmp_path):
    # a config outside this repository, parsed in a fresh interpreter
    child = write(
        tmp_path, 'child.py', '''
        _base_ = 'mmboxseg::boxinst/boxinst_r18_fpn_toy.py'
        model = dict(bbox_head=dict(num_classes=7))
        ''')
    code = textwrap.dedent(f'''
        import mmboxseg
        from mmengine.config import Config
        cfg = Config.fromfile({child!r})
        print(cfg.model.bbox_head.num_classes, cfg.model.mask_head.type,
              cfg.model.backbone.depth)
        ''')
    out = subprocess.run([sys.executable, '-c', code],
                         cwd=str(tmp_path),
                         capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['7', 'BoxSupMaskHead', '18']


def test_prefix_without_import_fails_as_documented(tmp_path):
    child = write(tmp_path, 'child.py',
                  "_base_ = 'mmboxseg::boxinst/boxinst_r18_fpn_toy.py'\n")
    code = ('from mmengine.config import Config\n'
            f'Config.fromfile({child!r})\n')
    out = subprocess.run([sys.executable, '-c', code],
                         cwd=str(tmp_path),
                         capture_output=True,
                         text=True)
    assert out.returncode != 0
    assert 'does not support to load mmboxseg config' in out.stderr


def test_unknown_config_key_names_the_key():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/boxinst/boxinst_r18_fpn_toy.py'))
    cfg.model.mask_head.pairwise_sze = 5
    with pytest.raises(TypeError, match='pairwise_sze'):
        MODELS.build(cfg.model)


def test_every_config_parses():
    import glob
    paths = glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    assert len(paths) >= 20
    for path in paths:
        if osp.basename(osp.dirname(path)) == '_base_':
            continue
        cfg = Config.fromfile(path)
        assert cfg.default_scope == 'mmboxseg', path
        # the zoo benchmark's peer is mmdet's own BoxInst, built from
        # mmdet's registry on purpose
        peer = path.endswith('boxinst_r18_fpn_toy_mmdet.py')
        assert cfg.model._scope_ == ('mmdet' if peer else 'mmboxseg'), path
        # every type resolves (pretrained weights load only in init_weights)
        model = MODELS.build(cfg.model)
        if peer:  # its classes: tests/test_tools/test_benchmark_zoo.py
            continue
        from mmboxseg.models import (BoxCasegHead, BoxSupMaskHead,
                                     DiscoBoxSOLOv2Head, ProxyFCNMaskHead)
        if hasattr(model, 'decode_head'):  # BoxCaseg's segmenter
            assert isinstance(model.decode_head, BoxCasegHead), path
            sources = cfg.train_dataloader.dataset.datasets
            assert [d.type
                    for d in sources] == ['BoxCropDataset',
                                          'SalientDataset'], path
            # the release samples COCO runs at a fixed box:salient ratio
            # and VOC runs from the union of both sources
            assert cfg.train_dataloader.sampler.type == (
                'InfiniteSampler'
                if 'voc-aug' in path else 'BoxSalientRatioSampler'), path
            for key in ('val_dataloader', 'test_dataloader'):
                assert cfg[key].dataset.type == 'BoxCropDataset', (path, key)
                assert cfg[key].dataset.with_mask, (path, key)
            check_voc_classes(path, [
                sources[0], cfg.val_dataloader.dataset,
                cfg.test_dataloader.dataset
            ])
            continue
        if hasattr(model, 'roi_head'):  # BoxCaseg's Proxy Mask R-CNN
            assert isinstance(model.roi_head.mask_head, ProxyFCNMaskHead), \
                path
        else:
            assert isinstance(model.mask_head,
                              (BoxSupMaskHead, DiscoBoxSOLOv2Head)), path
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            allowed = ('BoxCocoDataset', )
            if key == 'test_dataloader':  # correspondence test configs
                allowed += ('PFPascalPairDataset', )
            assert cfg[key].dataset.type in allowed, (path, key)
        check_voc_classes(path, [
            cfg[key].dataset for key in ('train_dataloader', 'val_dataloader',
                                         'test_dataloader')
            if cfg[key].dataset.type == 'BoxCocoDataset'
        ])


def check_voc_classes(path, datasets):
    """A config on the VOC-aug data must name the 20 VOC classes on every
    dataset: the COCO class names it would otherwise inherit share only 14
    of them. (COCO configs with VOC in their name, e.g. the semi-supervised
    COCO-with-VOC-20-masks split, keep the 80 COCO classes.)"""
    if 'voc-aug' not in osp.basename(path):
        return
    from mmboxseg.datasets.pf_pascal_pair_dataset import VOC_CLASSES
    assert datasets, path
    for ds in datasets:
        assert tuple(ds.get('metainfo', {}).get('classes', ())) == \
            VOC_CLASSES, (path, ds.get('ann_file'))


def test_version_and_mim_folder():
    assert mmboxseg.__version__
    from mmboxseg.utils import config_root
    assert osp.isfile(
        osp.join(config_root(), 'boxinst', 'boxinst_r18_fpn_toy.py'))


def test_model_index_lists_every_config():
    """Every method config is in a metafile imported by model-index.yml,
    and every metafile entry names an existing config and README."""
    import glob

    import yaml
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    listed = set()
    for metafile in index['Import']:
        with open(osp.join(REPO, metafile)) as f:
            meta = yaml.safe_load(f)
        for collection in meta['Collections']:
            assert osp.isfile(osp.join(REPO, collection['README'])), metafile
        for model in meta['Models']:
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Name']
            assert model['Name'] == osp.splitext(
                osp.basename(model['Config']))[0], model['Name']
            listed.add(model['Config'])
    configs = {
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) != '_base_'
    }
    assert configs - listed == set()
