# Copyright (c) mmboxseg contributors. All rights reserved.
"""The PF-PASCAL pair format, its errors, and the pair loading
transform."""
import os.path as osp

import numpy as np
import pytest

from mmboxseg.datasets import AnnotationFileError, PFPascalPairDataset
from mmboxseg.datasets.transforms import LoadCorrespondencePair
from ..conftest import load_tool

HEADER = 'source_image,target_image,class,XA,YA,XB,YB,bboxA,bboxB\n'


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('pairs'))
    tool = load_tool('tools/misc/make_toy_correspondence_pairs.py',
                     'make_toy_correspondence_pairs')
    tool.generate(out, num_pairs=3, img_size=64, num_keypoints=6, seed=1)
    return out


def dataset(root, ann='pairs.csv', **kw):
    return PFPascalPairDataset(
        data_root=root,
        ann_file=ann,
        data_prefix=dict(img='images/'),
        pipeline=[],
        **kw)


def test_toy_pairs_parse_and_keypoints_match_colours(pairs):
    import mmcv
    ds = dataset(pairs)
    assert len(ds) == 3
    info = ds.get_data_info(1)
    assert info['src_keypoints'].shape == (6, 2)
    assert info['keypoint_valid'].all() and info['category'] in range(4)
    a, b = mmcv.imread(info['src_img_path']), mmcv.imread(info['trg_img_path'])
    # the same textured object: colours at corresponding points agree
    # (nearest-pixel warp) far better than at random points
    pa = np.floor(info['src_keypoints']).astype(int)
    pb = np.floor(info['trg_keypoints']).astype(int)
    diff = np.abs(a[pa[:, 1], pa[:, 0]].astype(int) -
                  b[pb[:, 1], pb[:, 0]].astype(int)).mean()
    shuffled = np.abs(a[pa[:, 1], pa[:, 0]].astype(int) -
                      b[pb[::-1, 1], pb[::-1, 0]].astype(int)).mean()
    assert diff < 20 and diff < shuffled
    x1, y1, x2, y2 = info['trg_bbox']
    assert ((info['trg_keypoints'] >= [x1, y1]) &
            (info['trg_keypoints'] <= [x2, y2])).all()


def test_load_correspondence_pair_scales_and_packs(pairs):
    ds = dataset(pairs)
    info = ds.get_data_info(0)
    out = LoadCorrespondencePair(scale=(32, 48))(dict(info))
    assert out['img'].shape == (48, 64, 3) and out['pair_width'] == 32
    sx, sy = 32 / 64, 48 / 64
    np.testing.assert_allclose(
        out['trg_keypoints'], info['trg_keypoints'] * [sx, sy], rtol=1e-6)
    np.testing.assert_allclose(out['src_bbox'],
                               info['src_bbox'] * [sx, sy, sx, sy])
    np.testing.assert_array_equal(out['trg_keypoints_ori'],
                                  info['trg_keypoints'])
    assert out['trg_ori_shape'] == (64, 64)


def test_malformed_rows_name_file_row_and_field(tmp_path, pairs):
    root = str(tmp_path)
    img_dir = osp.join(root, 'images')
    import shutil
    shutil.copytree(osp.join(pairs, 'images'), img_dir)
    good = '000000_a.png,000000_b.png,1,1;2,3;4,5;6,7;8,0;0;9;9,0;0;9;9\n'

    def write(text):
        with open(osp.join(root, 'p.csv'), 'w') as f:
            f.write(text)

    write(HEADER + good + good.replace('1;2,3;4', '1;2;3,3;4'))
    with pytest.raises(AnnotationFileError, match=r'p\.csv: row 3.*XA'):
        dataset(root, 'p.csv')
    write(HEADER + good.replace('5;6', '5;x'))
    with pytest.raises(AnnotationFileError, match=r'row 2, field `XB`'):
        dataset(root, 'p.csv')
    write(HEADER + good.replace('0;0;9;9\n', '9;9;0;0\n'))
    with pytest.raises(AnnotationFileError, match='field `bboxB`'):
        dataset(root, 'p.csv')
    write('source_image,target_image,XA\n')
    with pytest.raises(AnnotationFileError, match='lacks the columns'):
        dataset(root, 'p.csv')
    write(HEADER + good.replace('000000_b.png', 'missing.png'))
    with pytest.raises(FileNotFoundError, match='missing.png.*row 2'):
        dataset(root, 'p.csv')
    with pytest.raises(FileNotFoundError, match='nothing.csv'):
        dataset(root, 'nothing.csv')
    # negative coordinates mark missing points
    write(HEADER + good.replace('1;2,3;4', '-1;2,3;4'))
    assert dataset(
        root,
        'p.csv').get_data_info(0)['keypoint_valid'].tolist() == [False, True]
