# Copyright (c) mmboxseg contributors. All rights reserved.
"""tools/analysis_tools/benchmark_zoo.py: the shared schedule, the
evaluation-mask pipeline, the mmdet peer config and the report."""
import copy
import os.path as osp

import pytest
from mmengine.config import Config

from mmboxseg.utils import register_all_modules
from ..conftest import REPO, load_tool

register_all_modules()


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis_tools/benchmark_zoo.py', 'benchmark_zoo')


def _cfg(rel):
    return Config.fromfile(osp.join(REPO, rel))


def test_schedule_is_scaled(tool):
    cfg = tool.set_schedule(
        _cfg('configs/boxinst/boxinst_r18_fpn_toy.py'), 1000, '/tmp/w')
    assert cfg.train_cfg.max_iters == 1000
    warmup, step = cfg.param_scheduler
    assert warmup.end == 100  # LinearLR warm-up kept
    assert step.end == 1000 and step.milestones == [800]
    assert cfg.default_hooks.checkpoint.interval == 1000
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    # a schedule shorter than the warm-up caps it
    cfg = tool.set_schedule(
        _cfg('configs/boxcaseg/boxcaseg_segmenter_r18_toy.py'), 10, '/tmp/w')
    assert [s.end for s in cfg.param_scheduler] == [10, 10]
    assert cfg.param_scheduler[1].milestones == [8]
    assert cfg.default_hooks.logger.interval == 10


def test_eval_masks_pipeline_reaches_every_packer(tool):
    cfg = tool.with_pseudo_mask_quality(
        _cfg('configs/boxteacher/boxteacher_r18_fpn_toy.py'),
        'annotations/instances_train_with_masks.json')
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[1].type == 'LoadAnnotations' and pipeline[1].with_mask
    branch = pipeline[-1]
    assert branch.type == 'MultiBranch'
    # teacher and student branch both pack the masks as eval_masks only
    assert branch.teacher[-1].type == 'PackDetInputsWithEvalMasks'
    assert branch.student[-1].type == 'PackDetInputsWithEvalMasks'
    assert not any(s.type == 'PackDetInputs' for s in branch.student)
    assert cfg.custom_hooks[-1].type == 'PseudoMaskQualityHook'
    assert cfg.custom_hooks[0].type == 'EMATeacherHook'  # kept
    assert cfg.train_dataloader.dataset.ann_file.endswith('with_masks.json')


def test_mmdet_peer_uses_mmdet_modules_with_mmdet_arguments():
    """The peer is mmdet 3.3.0's BoxInst: its classes, and the arguments of
    mmdet's own config except the toy's sizes and two toy settings."""
    import mmdet
    import mmdet.models as mmdet_models
    from mmdet.registry import MODELS
    peer = _cfg('configs/boxinst/boxinst_r18_fpn_toy_mmdet.py')
    ours = _cfg('configs/boxinst/boxinst_r18_fpn_toy.py')
    ref = Config.fromfile(
        osp.join(
            osp.dirname(mmdet.__file__), '.mim', 'configs', 'boxinst',
            'boxinst_r50_fpn_ms-90k_coco.py'))
    model = MODELS.build(copy.deepcopy(peer.model))  # build mutates it
    assert type(model) is mmdet_models.BoxInst
    assert type(model.data_preprocessor) is \
        mmdet_models.BoxInstDataPreprocessor
    assert type(model.bbox_head) is mmdet_models.BoxInstBboxHead
    assert type(model.mask_head) is mmdet_models.BoxInstMaskHead
    for split in ('train', 'test'):
        assert peer[f'{split}_dataloader'].dataset.type == 'CocoDataset'

    def differing(a, b):
        keys = set(a) | set(b)
        return {k for k in keys if a.get(k) != b.get(k)} - {'_scope_'}

    assert differing(peer.model.data_preprocessor,
                     ref.model.data_preprocessor) == {'bottom_pixels_removed'}
    mask, ref_mask = peer.model.mask_head, ref.model.mask_head
    assert differing(mask, ref_mask) == {'warmup_iters', 'mask_feature_head'}
    assert differing(mask.mask_feature_head, ref_mask.mask_feature_head) == {
        'in_channels', 'feat_channels', 'num_stacked_convs'
    }
    assert mask.warmup_iters == ours.model.mask_head.warmup_iters
    assert peer.model.bbox_head.num_params == ref.model.bbox_head.num_params
    # data, backbone, neck and schedule are the mmboxseg toy config's
    for key in ('backbone', 'neck'):
        assert peer.model[key] == ours.model[key]
    assert peer.train_dataloader.dataset.ann_file == \
        ours.train_dataloader.dataset.ann_file
    assert peer.param_scheduler == ours.param_scheduler
    assert peer.optim_wrapper == ours.optim_wrapper
    assert peer.randomness == ours.randomness


def _result(segm, step=None, train=None, **extra):
    return dict(
        metrics={
            'coco/segm_mAP': segm,
            'coco/segm_mAP_50': segm,
            'coco/segm_mAP_75': segm,
            'coco/bbox_mAP': 0.2
        },
        step_s=step,
        train_s=train,
        **extra)


def test_peer_check_and_table(tool):
    results = {
        'condinst': _result(0.150, 0.30, 600),
        'mmdet_boxinst': _result(0.040, 0.40, 700),
        'boxinst': _result(0.052, 0.30, 500),
        'sim': _result(0.030, 0.50, 900, pseudo_miou=61.25),
    }
    check = tool.peer_check(results)
    assert check['ap_diff'] == pytest.approx(1.2)
    assert check['ap_ok'] and check['step_ok']
    assert check['step_ratio'] == pytest.approx(0.75)
    assert check['paired'] is None and check['paired_step_ok'] is None
    results['boxinst'] = _result(0.060, 0.41, 500)
    check = tool.peer_check(results)
    assert not check['ap_ok'] and not check['step_ok']
    # the interleaved timing decides the speed verdict, whatever the runs'
    # medians say
    results['paired_step'] = dict(
        ours_step_s=0.33,
        peer_step_s=0.36,
        ratio=0.33 / 0.36,
        round_ratios=[0.9, 0.95],
        rounds=2,
        steps=10,
        from_checkpoints=True)
    check = tool.peer_check(results)
    assert check['paired_step_ok'] and not check['step_ok']
    results['paired_step']['ratio'] = 1.02
    assert not tool.peer_check(results)['paired_step_ok']
    rows = {row[0]: row for row in tool.table_rows(results)}
    assert list(rows) == [
        'CondInst (upper bound)', 'mmdet 3.3.0 BoxInst (peer)',
        'mmboxseg BoxInst', 'SIM'
    ]
    sim = rows['SIM']
    assert sim[2] == '0.030' and sim[6] == '0.20'  # ratio 0.03 / 0.15
    assert sim[7] == '15.0' and sim[8] == '500' and sim[-1] == '61.2'
    assert rows['CondInst (upper bound)'][-1] == '–'


def test_peer_check_over_seeds(tool):
    results = {
        'mmdet_boxinst': _result(0.043, 0.40),
        'boxinst': _result(0.004, 0.30),
        'mmdet_boxinst_seed1': _result(0.010, 0.40),
        'boxinst_seed1': _result(0.060, 0.32),
        'boxinst_seed2': _result(0.020, 0.30),  # its peer is missing
    }
    check = tool.peer_check(results, seeds=[1, 2])
    assert [p['seed'] for p in check['pairs']] == [0, 1]
    assert check['ap_diff'] == pytest.approx(-3.9)
    assert not check['ap_ok']
    # mean of -3.9 and +5.0
    assert check['mean_diff'] == pytest.approx(0.55)
    assert check['mean_ap_ok']
    assert check['median_ratio'] == pytest.approx((0.75 + 0.8) / 2)
    assert tool.row_key('boxinst', 2) == 'boxinst_seed2'
    assert tool.row_key('boxinst') == 'boxinst'


def test_box_pseudo_miou_by_hand(tool, tmp_path):
    """A 16x16-px box whose object is its left half: on the stride-4 grid
    the box covers 4x4 cells (centres 10, 14, 18, 22), the object the 2x4
    cells with x centres 10 and 14: IoU 8 / 16."""
    import json

    import numpy as np
    from pycocotools import mask as mask_utils
    mask = np.zeros((60, 64), np.uint8)  # padded to 64x64 by the model
    mask[8:24, 8:16] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle['counts'] = rle['counts'].decode()
    ann = dict(
        images=[dict(id=1, file_name='a.png', height=60, width=64)],
        categories=[dict(id=1, name='thing')],
        annotations=[
            dict(
                id=1,
                image_id=1,
                category_id=1,
                bbox=[8, 8, 16, 16],
                area=128,
                iscrowd=0,
                segmentation=rle)
        ])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(ann))
    assert tool.box_pseudo_miou(str(path)) == pytest.approx(50.0)


def test_quick_run_end_to_end(tool, tmp_path):
    """``--quick``: every row trains (10 iterations), tests and lands in
    the table; the peer section has both seeds; the plot is a PNG."""
    out = tmp_path / 'benchmark.md'
    results = tool.main(
        ['--quick', '--work-dir',
         str(tmp_path / 'work'), '--out',
         str(out)])
    names = [m[0] for m in tool.METHODS]
    assert set(names) | {
        'mmdet_boxinst_seed1', 'boxinst_seed1', '_reference', 'paired_step'
    } == set(results)
    paired = results['paired_step']
    # 2 timed rounds after the warm-up; both models from their checkpoints
    assert paired['rounds'] == 2 and len(paired['round_ratios']) == 2
    assert paired['from_checkpoints']
    assert paired['ratio'] == pytest.approx(paired['ours_step_s'] /
                                            paired['peer_step_s'])
    text = out.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith('| ')]
    # header + 9 method rows + peer header + 2 seeds + mean
    assert len(rows) == 1 + len(names) + 1 + 2 + 1
    assert '--quick` smoke run' in text
    assert 'interleaved train-step timing' in text
    # BoxCaseg's proxy masks are scored by the proxy tool; SIM's pseudo
    # masks start at pseudo_start_iters (the release's 10k, 200 on the toy
    # config), after a 10-iteration smoke run
    assert 'pseudo_miou' not in results['sim']
    for name in ('boxcaseg', 'self_training'):
        assert 0 <= results[name]['pseudo_miou'] <= 100
    assert 0 < results['_reference']['box_pseudo_miou'] < 100
    for name in names:
        if name != 'box_baseline':
            assert results[name]['step_s'] > 0
            assert results[name]['peak_mem_mib'] > 0
            assert results[name]['infer_img_s'] > 0
    with open(tmp_path / 'benchmark_zoo.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
