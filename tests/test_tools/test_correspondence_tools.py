# Copyright (c) mmboxseg contributors. All rights reserved.
"""The correspondence API and tools/misc/transfer_keypoints.py."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from mmboxseg.utils import register_all_modules
from ..conftest import REPO, load_tool

register_all_modules()
CFG = osp.join(REPO, 'configs/discobox/discobox_solov2_r18_fpn_toy.py')


@pytest.fixture(scope='module')
def model_and_pairs(tmp_path_factory):
    from mmdet.apis import init_detector
    out = tmp_path_factory.mktemp('corr')
    pairs = str(out / 'pairs')
    load_tool('tools/misc/make_toy_correspondence_pairs.py',
              'make_toy_correspondence_pairs').generate(
                  pairs, num_pairs=2, img_size=96, num_keypoints=4)
    ckpt = load_tool('tools/analysis_tools/init_checkpoint.py',
                     'init_checkpoint').save_init_checkpoint(
                         CFG, str(out / 'init.pth'), seed=0)
    model = init_detector(CFG, ckpt, device='cpu')
    # seeded: the same weights again
    again = torch.load(
        load_tool('tools/analysis_tools/init_checkpoint.py',
                  'init_checkpoint').save_init_checkpoint(
                      CFG, str(out / 'again.pth'), seed=0))['state_dict']
    for key, value in model.state_dict().items():
        assert torch.equal(value, again[key]), key
    return model, ckpt, pairs


def test_an_image_matches_itself(model_and_pairs):
    from mmboxseg.apis import dense_correspondence, transfer_keypoints
    model, _, pairs = model_and_pairs
    img = osp.join(pairs, 'images', '000000_a.png')
    box = [8, 16, 72, 80]
    out = dense_correspondence(model, img, img, box, box, grid=8)
    assert out['points_a'].shape == (64, 2) and out['scores'].shape == (64, )
    assert out['scores_matrix'].shape == (64, 64)
    np.testing.assert_allclose(out['box_b'], box, atol=1e-4)
    # cell centres of the box, in original pixels
    np.testing.assert_allclose(out['points_a'][0], [12, 20], atol=1e-4)
    same = np.linalg.norm(out['points_a'] - out['points_b'], axis=1) < 1e-3
    assert same.mean() > 0.8
    kps = transfer_keypoints(
        model, img, img, [[12, 20], [70, 78]], box, box, grid=8)
    assert kps.shape == (2, 2)
    # a given correspondence is reused, with the same result; the first
    # keypoint sits at cell 0's centre, so it moves to that cell's match
    again = transfer_keypoints(
        model, img, img, [[12, 20], [70, 78]], correspondence=out)
    np.testing.assert_array_equal(again, kps)
    np.testing.assert_allclose(kps[0], out['points_b'][0], atol=1e-4)


def test_transfer_keypoints_tool(model_and_pairs, tmp_path, capsys):
    _, ckpt, pairs = model_and_pairs
    tool = load_tool('tools/misc/transfer_keypoints.py', 'transfer_keypoints')
    a = osp.join(pairs, 'images', '000001_a.png')
    b = osp.join(pairs, 'images', '000001_b.png')
    vis = str(tmp_path / 'vis.png')
    result = tool.main([
        CFG, ckpt, a, b, '--keypoints', '10,20', '30,40', '--box-a', '0', '0',
        '96', '96', '--box-b', '0', '0', '96', '96', '--out', vis
    ])
    assert np.asarray(result['keypoints_b']).shape == (2, 2)
    printed = json.loads(capsys.readouterr().out.splitlines()[-2])
    assert printed['keypoints_a'] == [[10.0, 20.0], [30.0, 40.0]]
    assert osp.isfile(vis)
    result = tool.main([CFG, ckpt, a, b, '--top', '5'])
    assert len(result['points_a']) == 5
    assert result['scores'] == sorted(result['scores'], reverse=True)
    with pytest.raises(SystemExit):
        tool.parse_args([CFG, ckpt, a, b, '--keypoints', '10;20'])


def test_voc_training_excludes_pf_pascal_images(tmp_path):
    """Release tools/get_voctraining_excluding_pfpascaltesting.py: drop
    every COCO image (and its annotations) whose file name is a source or
    target of a pair list; here the validation and test lists."""
    from mmengine.config import Config
    coco = dict(
        images=[
            dict(id=1, file_name='2008_000001.jpg'),
            dict(id=2, file_name='2008_000002.jpg'),
            dict(id=3, file_name='sub/2009_000003.jpg'),
            dict(id=4, file_name='2010_000004.jpg')
        ],
        annotations=[
            dict(id=10, image_id=1),
            dict(id=11, image_id=2),
            dict(id=12, image_id=2),
            dict(id=13, image_id=3),
            dict(id=14, image_id=4)
        ],
        categories=[dict(id=1, name='aeroplane')])
    header = 'source_image,target_image,class,XA,YA,XB,YB\n'
    val = tmp_path / 'val_pairs.csv'
    val.write_text(header + 'PF-dataset-PASCAL/JPEGImages/2008_000002.jpg,'
                   'PF-dataset-PASCAL/JPEGImages/2009_000003.jpg,1,1,1,1,1\n')
    test = tmp_path / 'test_pairs.csv'
    test.write_text(header + 'JPEGImages/2010_000004.jpg,'
                    'JPEGImages/2011_999999.jpg,1,1,1,1,1\n')
    src = tmp_path / 'voc.json'
    src.write_text(json.dumps(coco))
    out = tmp_path / 'out.json'
    tool = load_tool('tools/misc/exclude_pf_pascal_images.py',
                     'exclude_pf_pascal_images')
    removed = tool.main([str(src), str(val), str(test), '--out', str(out)])
    assert removed == 3
    got = json.loads(out.read_text())
    assert [im['id'] for im in got['images']] == [1]
    assert [a['id'] for a in got['annotations']] == [10]
    assert got['categories'] == coco['categories']
    # the PF-PASCAL config trains on the tool's output
    cfg = Config.fromfile(
        osp.join(REPO,
                 'configs/discobox/discobox_solov2_r50_fpn_pf-pascal.py'))
    assert cfg.train_dataloader.dataset.ann_file == \
        'annotations/voc_2012_train_aug_excluding_pfpascal.json'
    assert 'voc_2012_train_aug_excluding_pfpascal.json' in tool.__doc__
    assert cfg.test_dataloader.dataset.type == 'PFPascalPairDataset'
