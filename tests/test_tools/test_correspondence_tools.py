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
