# Copyright (c) mmboxseg contributors. All rights reserved.
"""Every file mmboxseg reads from a user is read without running code from
it: crafted pickles and checkpoints are refused at each entry point, and
the side effect they carry never happens."""
import collections
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from mmboxseg.utils import load_safe_pickle, register_all_modules
from ..conftest import REPO, load_tool, toy_config, train

register_all_modules()

TOY_CFG = osp.join(REPO, 'configs/boxinst/boxinst_r18_fpn_toy.py')


class Payload:
    """Unpickling it creates a folder: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker, )


@pytest.fixture
def marker(tmp_path):
    path = str(tmp_path / 'code_ran')
    yield path
    assert not osp.exists(path), 'a crafted file ran code'


@pytest.fixture
def evil_pickle(tmp_path, marker):
    path = str(tmp_path / 'preds.pkl')
    with open(path, 'wb') as f:
        pickle.dump([{'pred_instances': Payload(marker)}], f)
    return path


@pytest.fixture
def evil_checkpoint(tmp_path, marker):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': Payload(marker)}, path)
    return path


def test_the_payload_really_runs_code_under_plain_pickle(tmp_path):
    marker = str(tmp_path / 'ran')
    pickle.loads(pickle.dumps(Payload(marker)))
    assert osp.isdir(marker)


def test_safe_pickle_reads_what_mmdet_dumps(tmp_path):
    data = [
        dict(
            img_id=3,
            ori_shape=(40, 50),
            img_path='a/b.png',
            pred_instances=dict(
                bboxes=torch.rand(2, 4),
                scores=torch.tensor([0.5, 0.25]),
                labels=torch.tensor([1, 0]),
                masks=[dict(size=[40, 50], counts=b'abc')]),
            extra=collections.OrderedDict(
                a=np.arange(3.), b=np.float64(2), c=np.int64(7)),
            dtype=torch.float16)
    ]
    path = str(tmp_path / 'preds.pkl')
    with open(path, 'wb') as f:
        pickle.dump(data, f)
    got = load_safe_pickle(path)
    # protocol 2 (what mmengine.dump may write) stores array bytes through
    # codecs.encode
    old = str(tmp_path / 'preds_p2.pkl')
    with open(old, 'wb') as f:
        pickle.dump(data, f, protocol=2)
    np.testing.assert_array_equal(
        load_safe_pickle(old)[0]['extra']['a'], np.arange(3.))
    pred = got[0]['pred_instances']
    torch.testing.assert_close(pred['bboxes'],
                               data[0]['pred_instances']['bboxes'])
    assert pred['masks'][0]['counts'] == b'abc'
    np.testing.assert_array_equal(got[0]['extra']['a'], np.arange(3.))
    assert got[0]['extra']['b'] == 2.0 and got[0]['extra']['c'] == 7
    assert got[0]['dtype'] is torch.float16


def test_safe_pickle_refuses_code(evil_pickle):
    with pytest.raises(pickle.UnpicklingError, match='posix.makedirs|os'):
        load_safe_pickle(evil_pickle)


def test_safe_pickle_refuses_a_tensor_payload_that_runs_code(tmp_path, marker):
    """A tensor's storage bytes go through torch's weights_only loader,
    not the ``weights_only=False`` one that plain unpickling calls."""
    inner = str(tmp_path / 'inner.pth')
    torch.save(Payload(marker), inner)
    payload = open(inner, 'rb').read()

    class FakeStorage:

        def __reduce__(self):
            return torch.storage._load_from_bytes, (payload, )

    path = str(tmp_path / 'storage.pkl')
    with open(path, 'wb') as f:
        pickle.dump(FakeStorage(), f)
    with pytest.raises(pickle.UnpicklingError):
        load_safe_pickle(path)


def test_box_baseline_tool_refuses_a_crafted_predictions_file(evil_pickle):
    tool = load_tool('tools/analysis_tools/eval_box_baseline.py', 'ebb')
    with pytest.raises(pickle.UnpicklingError, match=evil_pickle):
        tool.main([TOY_CFG, evil_pickle, '--ann-file', 'unused.json'])


def test_checkpoint_entry_points_refuse_code(evil_checkpoint, tiny_toy,
                                             tmp_path):
    from mmdet.apis import init_detector
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from mmboxseg.apis import BoxSegInferencer
    from mmboxseg.registry import MODELS
    cfg = Config.fromfile(TOY_CFG)
    model = MODELS.build(cfg.model)
    quality = load_tool('tools/analysis_tools/pseudo_mask_quality.py', 'pmq')
    entry_points = {
        'torch.load':
        lambda: torch.load(evil_checkpoint),
        'load_checkpoint (browse, heads)':
        lambda: load_checkpoint(model, evil_checkpoint),
        'init_detector (export, proxy masks, keypoints)':
        lambda: init_detector(cfg, evil_checkpoint, device='cpu'),
        'BoxSegInferencer (demo)':
        lambda: BoxSegInferencer(TOY_CFG, evil_checkpoint, device='cpu'),
        'pseudo_mask_quality':
        lambda: quality.measure(
            toy_config(
                tiny_toy, str(tmp_path / 'q'),
                osp.join(REPO, 'configs/boxteacher/boxteacher_r18_fpn_toy.py')
            ), evil_checkpoint,
            osp.join(tiny_toy, 'annotations/instances_train_with_masks.json'),
            1, 1),
        'resume (tools/train.py --resume, mim train --resume)':
        lambda: train(
            toy_config(tiny_toy, str(tmp_path / 'w'), TOY_CFG, max_iters=1),
            resume_from=evil_checkpoint),
    }
    for name, call in entry_points.items():
        with pytest.raises(pickle.UnpicklingError):
            call()
