# Copyright (c) mmboxseg contributors. All rights reserved.
import json
import os
import os.path as osp

import numpy as np
import pytest

from ..conftest import load_tool

toy = load_tool('tools/misc/make_toy_dataset.py', 'make_toy_dataset_t')

SIZES = dict(num_train=14, num_val=6, num_test=6, img_size=96)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def ann(out, split):
    with open(osp.join(out, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('toy_a'))
    toy.generate(out, seed=5, **SIZES)
    return out


def test_deterministic_from_seed(dataset, tmp_path):
    again = str(tmp_path / 'again')
    toy.generate(again, seed=5, **SIZES)
    other = str(tmp_path / 'other')
    toy.generate(other, seed=6, **SIZES)
    for split in ('train', 'train_with_masks', 'val', 'test'):
        name = f'annotations/instances_{split}.json'
        assert read(osp.join(dataset, name)) == read(osp.join(again, name))
        assert read(osp.join(dataset, name)) != read(osp.join(other, name))
    img = 'images/val/000003.png'
    assert read(osp.join(dataset, img)) == read(osp.join(again, img))
    assert read(osp.join(dataset, img)) != read(osp.join(other, img))


def test_train_has_boxes_only_and_eval_files_have_masks(dataset):
    train = ann(dataset, 'train')
    assert train['annotations']
    assert not any('segmentation' in a for a in train['annotations'])
    # boxes only: not even the mask area
    assert all(a['area'] == a['bbox'][2] * a['bbox'][3]
               for a in train['annotations'])
    masked = ann(dataset, 'train_with_masks')
    # the same instances, with masks (and mask areas)
    assert [{
        k: v
        for k, v in a.items() if k not in ('segmentation', 'area')
    } for a in masked['annotations']] == [{
        k: v
        for k, v in a.items() if k != 'area'
    } for a in train['annotations']]
    for split in ('train_with_masks', 'val', 'test'):
        assert all('segmentation' in a
                   for a in ann(dataset, split)['annotations'])
    assert len({a['category_id'] for a in train['annotations']}) >= 3


def test_boxes_are_tight_and_masks_are_not_boxes(dataset):
    mask_utils = pytest.importorskip('pycocotools.mask')
    fills, widths = [], []
    for split in ('val', 'test', 'train_with_masks'):
        content = ann(dataset, split)
        size = {i['id']: (i['height'], i['width']) for i in content['images']}
        for a in content['annotations']:
            m = mask_utils.decode(a['segmentation'])
            assert m.shape == size[a['image_id']]
            ys, xs = np.nonzero(m)
            x, y, w, h = a['bbox']
            assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(),
                                                    xs.max(), ys.max())
            assert 0 <= x and x + w <= m.shape[1] and y + h <= m.shape[0]
            assert a['area'] == m.sum()
            fills.append(m.sum() / (w * h))
            widths.append(max(w, h))
    # non-convex shapes: a filled box would be a poor mask. The visible part
    # of an occluded shape may fill a little less than the generator's
    # [0.30, 0.70] bound on whole shapes.
    assert 0.2 <= min(fills) and max(fills) <= 0.8
    assert 0.35 <= float(np.mean(fills)) <= 0.55
    assert min(widths) <= 24 and max(widths) >= 40  # a range of scales


def test_some_training_images_have_no_object(tmp_path):
    out = str(tmp_path / 'many')
    toy.generate(
        out, seed=0, num_train=120, num_val=1, num_test=1, img_size=64)
    train = ann(out, 'train')
    with_objects = {a['image_id'] for a in train['annotations']}
    empty = len(train['images']) - len(with_objects)
    assert 0 < empty < 12


def test_images_decode(dataset):
    cv2 = pytest.importorskip('cv2')
    img = cv2.imread(osp.join(dataset, 'images/train/000000.png'))
    assert img.shape == (96, 96, 3) and img.std() > 5


def test_main_skips_complete_dataset(tmp_path, capsys):
    out = str(tmp_path / 'cli')
    args = [
        '--out', out, '--seed', '1', '--num-train', '3', '--num-val', '2',
        '--num-test', '2', '--img-size', '64'
    ]
    toy.main(args)
    path = osp.join(out, 'annotations', 'instances_train.json')
    mtime = os.stat(path).st_mtime_ns
    capsys.readouterr()
    toy.main(args)
    assert 'already present' in capsys.readouterr().out
    assert os.stat(path).st_mtime_ns == mtime
    toy.main(args + ['--force'])
    assert os.stat(path).st_mtime_ns != mtime
