# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg end to end on tiny toy data: `mim train`/`mim test` of the
segmenter, the proxy-mask tool (schema, merge, box-only input, resume) and
`mim train`/`mim test` of the Proxy Mask R-CNN on its output."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from tests.conftest import as_cli, load_tool, toy_cfg_options
from tests.test_engine.test_box_only_and_resume import MIM, run

SEG_CFG = 'configs/boxcaseg/boxcaseg_segmenter_r18_toy.py'
PROXY_CFG = 'configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py'
TOOL = 'tools/boxcaseg/generate_proxy_masks.py'


@pytest.fixture(scope='module')
def tiny_salient(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('toy_salient'))
    toy = load_tool('tools/misc/make_toy_dataset.py', 'make_toy_dataset')
    toy.generate_salient(out, seed=1, num_salient=10, img_size=64)
    return out


def seg_options(data_root, salient_root, work_dir):
    opts = toy_cfg_options(data_root, work_dir, max_iters=2)
    del opts['val_evaluator.ann_file'], opts['test_evaluator.ann_file']
    del opts['train_dataloader.dataset.data_root']
    opts.update({
        'train_dataloader.dataset.datasets.0.data_root':
        data_root + '/',
        'train_dataloader.dataset.datasets.1.data_root':
        salient_root + '/',
        'train_dataloader.batch_size':
        4,
        'train_dataloader.sampler.batch_size':
        4,
    })
    return opts


@pytest.fixture(scope='module')
def segmenter(tiny_toy, tiny_salient, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('seg'))
    opts = seg_options(tiny_toy, tiny_salient, work_dir)
    out = run([*MIM, 'train', 'mmboxseg', SEG_CFG] + as_cli(opts))
    assert 'Iter(train) [2/2]' in out
    # a 4-crop batch of 11:5 holds 3 box crops and 1 salient image
    assert 'salient_frac: 0.2500' in out
    ckpt = osp.join(work_dir, 'iter_2.pth')
    return ckpt, opts, out


def test_mim_train_and_test_segmenter(segmenter):
    ckpt, opts, _ = segmenter
    out = run([*MIM, 'test', 'mmboxseg', SEG_CFG, '--checkpoint', ckpt] +
              as_cli(opts))
    for key in ('crop/mIoU*', 'crop/IoU@50', 'crop/IoU@75'):
        assert key in out
    tested = float(re.search(r'crop/mIoU\*: ([0-9.]+)', out).group(1))
    # the per-head analysis tool scores the fused head exactly as `mim test`
    heads = load_tool('tools/analysis_tools/boxcaseg_heads.py', 'heads')
    results = heads.main([SEG_CFG, ckpt, '--split', 'test'] + as_cli(opts))
    assert results['fused']['mIoU*'] == pytest.approx(tested, abs=1e-4)
    assert set(results) == {'box', 'weak', 'salient', 'transferred', 'fused'}


def box_only_input(tiny_toy, tmp_path):
    """The masked train file with every `segmentation` replaced by a value
    the tool would choke on if it read it."""
    with open(
            osp.join(tiny_toy, 'annotations',
                     'instances_train_with_masks.json')) as f:
        content = json.load(f)
    for ann in content['annotations']:
        ann['segmentation'] = 'GROUND TRUTH MUST NOT BE READ'
    path = str(tmp_path / 'boxes.json')
    with open(path, 'w') as f:
        json.dump(content, f)
    return path, content


def generate(tool, tiny_toy, ckpt, in_ann, out_ann, *extra):
    return tool.main([
        SEG_CFG, ckpt, in_ann, out_ann, '--img-prefix',
        osp.join(tiny_toy, 'images', 'train'), '--batch-size', '5', *extra
    ])


def test_proxy_masks_schema_merge_and_box_only(segmenter, tiny_toy, tmp_path,
                                               capsys):
    from pycocotools.coco import COCO
    tool = load_tool(TOOL, 'generate_proxy_masks')
    ckpt = segmenter[0]
    in_ann, content = box_only_input(tiny_toy, tmp_path)
    out_ann = str(tmp_path / 'proxy.json')
    gt_ann = osp.join(tiny_toy, 'annotations',
                      'instances_train_with_masks.json')
    stats = generate(tool, tiny_toy, ckpt, in_ann, out_ann, '--gt-ann', gt_ann,
                     '--drop-thr', '0.95', '0.5')
    printed = capsys.readouterr().out
    assert 'boxes/s' in printed and 'mIoU before merge' in printed
    assert '| drop threshold | drop rate (%) |' in printed
    assert not osp.exists(out_ann + '.partial.jsonl')
    coco = COCO(out_ann)  # pycocotools reads it
    assert len(coco.getAnnIds()) == len(content['annotations'])
    per_image = {}
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert 0.0 <= ann['proxy_box_agreement'] <= 1.0
        assert ann['segmentation'] != 'GROUND TRUTH MUST NOT BE READ'
        mask = coco.annToMask(ann).astype(bool)
        assert ann['area'] == mask.sum()
        per_image.setdefault(ann['image_id'], []).append(mask)
    # merged masks of one image are disjoint
    for masks in per_image.values():
        assert np.stack(masks).sum(0).max() <= 1
    assert stats['masks'] == len(content['annotations'])
    assert stats['evaluated'] == len(content['annotations'])
    # the drop rate is the share of agreements below the threshold
    agreements = np.array(
        [a['proxy_box_agreement'] for a in coco.loadAnns(coco.getAnnIds())])
    assert stats['drop_rate'] == pytest.approx((agreements < 0.95).mean())
    assert stats['per_thr'][1]['drop_rate'] == pytest.approx((agreements
                                                              < 0.5).mean())
    assert stats['per_thr'][1]['kept'] == (agreements >= 0.5).sum()


def test_proxy_masks_resume_after_interruption(segmenter, tiny_toy, tmp_path):
    tool = load_tool(TOOL, 'generate_proxy_masks_resume')
    ckpt = segmenter[0]
    in_ann, _ = box_only_input(tiny_toy, tmp_path)
    once = str(tmp_path / 'once.json')
    generate(tool, tiny_toy, ckpt, in_ann, once)

    resumed = str(tmp_path / 'resumed.json')
    real_process = tool.ProxyMaskGenerator.process
    calls = []

    def interrupted(self, images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_process(self, images)

    tool.ProxyMaskGenerator.process = interrupted
    with pytest.raises(KeyboardInterrupt):
        generate(tool, tiny_toy, ckpt, in_ann, resumed)
    tool.ProxyMaskGenerator.process = real_process
    partial = resumed + '.partial.jsonl'
    with open(partial) as f:
        done_lines = f.read().splitlines()[1:]
    assert 0 < len(done_lines) < 12
    with open(partial, 'a') as f:  # a line torn by the interruption
        f.write('{"image_id": 99, "an')
    generate(tool, tiny_toy, ckpt, in_ann, resumed, '--resume')
    with open(once) as f, open(resumed) as g:
        assert json.load(f)['annotations'] == json.load(g)['annotations']
    # a partial file of other inputs is refused
    generate_args = (tool, tiny_toy, ckpt, in_ann, resumed)
    with open(partial, 'w') as f:
        f.write(json.dumps(dict(format='other')) + '\n')
    with pytest.raises(SystemExit, match='other inputs'):
        generate(*generate_args, '--resume')
    # so is one written with another model or crop config, naming it
    tool.ProxyMaskGenerator.process = interrupted
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        generate(*generate_args)
    tool.ProxyMaskGenerator.process = real_process
    with pytest.raises(SystemExit, match='differs in config'):
        generate(*generate_args, '--resume', '--cfg-options',
                 'model.test_cfg.mask_thr=0.3')
    # a header torn by an interruption at the very start
    with open(partial, 'w') as f:
        f.write('{"format": "mmbox')
    with pytest.raises(SystemExit, match='no readable header'):
        generate(*generate_args, '--resume')


def test_proxy_masks_skip_crowd_degenerate_and_empty_images(
        segmenter, tiny_toy, tmp_path):
    tool = load_tool(TOOL, 'generate_proxy_masks_skips')
    ckpt = segmenter[0]
    _, content = box_only_input(tiny_toy, tmp_path)
    images = content['images']
    # image 0 loses its boxes and its file: it must not be read at all
    empty_id = images[0]['id']
    images[0]['file_name'] = 'does_not_exist.png'
    anns = [a for a in content['annotations'] if a['image_id'] != empty_id]
    img1 = images[1]['id']
    next_id = max(a['id'] for a in anns) + 1
    # a crowd box, a degenerate box and a box outside the image
    odd = [([2, 2, 10, 10], 1), ([5, 5, 0.5, 8], 0),
           ([images[1]['width'] + 5, 3, 6, 6], 0)]
    anns += [
        dict(
            id=next_id + k,
            image_id=img1,
            category_id=1,
            bbox=bbox,
            area=bbox[2] * bbox[3],
            iscrowd=crowd) for k, (bbox, crowd) in enumerate(odd)
    ]
    content['annotations'] = anns
    in_ann = str(tmp_path / 'skips.json')
    with open(in_ann, 'w') as f:
        json.dump(content, f)
    out_ann = str(tmp_path / 'skips_proxy.json')
    stats = generate(tool, tiny_toy, ckpt, in_ann, out_ann)
    assert stats['annotations'] == len(anns)
    assert stats['masks'] == len(anns) - 3
    with open(out_ann) as f:
        out = {a['id']: a for a in json.load(f)['annotations']}
    for k in range(3):  # crowd, degenerate, outside: no mask, agreement 0
        assert 'segmentation' not in out[next_id + k]
        assert out[next_id + k]['proxy_box_agreement'] == 0.0
    # an image whose file disagrees with its `width` is a clear error
    content['images'][1]['width'] += 1
    with open(in_ann, 'w') as f:
        json.dump(content, f)
    with pytest.raises(ValueError, match='`width`/`height` of image id'):
        generate(tool, tiny_toy, ckpt, in_ann, out_ann)


def test_mim_train_and_test_proxy_mask_rcnn(segmenter, tiny_toy, tmp_path):
    tool = load_tool(TOOL, 'generate_proxy_masks_train')
    in_ann, _ = box_only_input(tiny_toy, tmp_path)
    proxy = str(tmp_path / 'proxy.json')
    generate(tool, tiny_toy, segmenter[0], in_ann, proxy)
    work_dir = str(tmp_path / 'mrcnn')
    opts = toy_cfg_options(
        tiny_toy,
        work_dir,
        max_iters=2,
        **{
            'train_dataloader.dataset.ann_file': proxy,
            'model.test_cfg.rcnn.score_thr': 0.0
        })
    out = run([*MIM, 'train', 'mmboxseg', PROXY_CFG] + as_cli(opts))
    assert 'Iter(train) [2/2]' in out and 'mask_kept_frac' in out
    ckpt = osp.join(work_dir, 'iter_2.pth')
    test_out = run(
        [*MIM, 'test', 'mmboxseg', PROXY_CFG, '--checkpoint', ckpt] +
        as_cli(opts))
    assert 'coco/segm_mAP' in test_out and 'coco/bbox_mAP' in test_out
    # the checkpoint loads with torch's safe loader
    torch.load(ckpt, weights_only=True)
