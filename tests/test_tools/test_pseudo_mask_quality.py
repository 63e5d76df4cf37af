# Copyright (c) mmboxseg contributors. All rights reserved.
"""pseudo_mask_quality.py: the per-instance scores by hand, and a run on
the tiny toy set."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO, load_tool

register_all_modules()
CFG = osp.join(REPO, 'configs/boxteacher/boxteacher_r18_fpn_toy.py')


def tool():
    return load_tool('tools/analysis_tools/pseudo_mask_quality.py',
                     'pseudo_mask_quality')


def test_instance_scores_by_hand():
    box = torch.zeros(1, 4, 4, dtype=torch.bool)
    box[0, :, :2] = True  # 8 cells
    truth = torch.zeros_like(box)
    truth[0, :2, :2] = True  # 4 cells
    pseudo = torch.zeros_like(box)
    pseudo[0, 1:4, :2] = True  # 6 cells, 2 shared with the truth
    iou, fill, true_fill = tool().instance_scores(pseudo, truth, box)
    assert iou.item() == pytest.approx(2 / 8)
    assert fill.item() == pytest.approx(6 / 8)
    assert true_fill.item() == pytest.approx(4 / 8)


def test_box_shaped_pseudo_masks_score_the_true_box_fill(
        tiny_toy, tmp_path, monkeypatch):
    """With every box given its own box as pseudo mask, the IoU with a true
    mask inside the box is the share of the box the mask fills."""
    from mmboxseg.models.detectors import BoxTeacher

    def boxes_as_pseudo_masks(self, t_inputs, t_samples, s_samples):
        for sample in s_samples:
            gt = sample.gt_instances
            gt.pseudo_masks = gt.box_masks.clone()
            gt.pseudo_scores = torch.ones(len(gt))
        return {}

    monkeypatch.setattr(BoxTeacher, 'add_pseudo_masks', boxes_as_pseudo_masks)
    cfg = Config.fromfile(CFG)
    cfg.train_dataloader.dataset.data_root = tiny_toy + '/'
    model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    result = tool().measure(cfg, ckpt,
                            'annotations/instances_train_with_masks.json', 4,
                            2)
    assert result['images'] == 4 and result['boxes'] > 0
    assert result['assigned'] == 1.0
    assert result['pseudo_box_fill'] == 1.0
    assert 0 < result['true_box_fill'] < 1
    assert result['pseudo_miou'] == pytest.approx(
        result['true_box_fill'], abs=0.02)
