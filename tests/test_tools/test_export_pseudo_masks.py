# Copyright (c) mmboxseg contributors. All rights reserved.
"""tools/misc/export_pseudo_masks.py: Alg. 1 assignment, clipping and merge
on hand-built cases; on the tiny toy set with a randomly initialised BoxInst:
pycocotools schema, mixed-supervision round trip through BoxCocoDataset,
byte-identical --resume; --gt-ann mIoU and bad input on a constructed
set with fake predictions."""
import json
import math
import os.path as osp
import warnings

import mmcv
import numpy as np
import pytest
import torch

from ..conftest import load_tool, read_json
from ..test_engine.test_box_only_and_resume import batch_losses, toy_config

TOOL = 'tools/misc/export_pseudo_masks.py'
TOY_CFG = 'configs/boxinst/boxinst_r18_fpn_toy.py'
# random weights score ~0.01: keep every detection (max_per_img 50)
KEEP_ALL = ['--cfg-options', 'model.test_cfg.score_thr=0.0']
SENTINEL = 'GROUND TRUTH MUST NOT BE READ'

tool = load_tool(TOOL, 'export_pseudo_masks')


def full_masks(n, hw=(20, 20)):
    return torch.ones((n, *hw), dtype=torch.bool)


def box_pixels(boxes, hw=(20, 20)):
    regions = torch.tensor(boxes, dtype=torch.float32)
    regions = torch.cat([regions[:, :2].floor(), regions[:, 2:].ceil()], 1)
    return tool.region_masks(regions.long(), hw)


# -- assignment, clipping, merge --------------------------------------------
def test_assignment_highest_score_first_thresholds_one_per_box():
    gts = torch.tensor([[0., 0., 10., 10.], [10., 10., 20., 20.]])
    preds = torch.tensor([
        [0., 0., 10., 10.],  # p0: IoU 1 with A
        [0., 0., 10., 9.],  # p1: IoU 0.9 with A, higher score
        [10., 10., 20., 14.],  # p2: IoU 0.4 with B, highest score
        [10., 10., 20., 20.],  # p3: IoU 1 with B, lowest score
    ])
    conf = torch.tensor([0.6, 0.9, 0.95, 0.04])
    box_masks = box_pixels(gts.tolist())

    def assign(iou_thr, score_thr):
        return tool.assign_masks(preds, conf, full_masks(4), gts, box_masks,
                                 iou_thr, score_thr)[0].tolist()

    # p1 outranks the better-fitting p0; p2 misses the IoU threshold and
    # p3 the score threshold
    assert assign(0.5, 0.05) == [1, -1]
    assert assign(0.5, 0.0) == [1, 3]
    # p2 now qualifies and, visited before p3, takes B: one per box
    assert assign(0.3, 0.0) == [1, 2]
    assert assign(0.95, 0.0) == [0, 3]
    # a prediction overlapping both boxes goes to the one it fits best
    both = torch.tensor([[0., 0., 20., 12.]])  # IoU 0.42 with A, 0.06 with B
    assigned, masks, scores = tool.assign_masks(both, torch.tensor([0.5]),
                                                full_masks(1), gts, box_masks,
                                                0.0, 0.0)
    assert assigned.tolist() == [0, -1]
    assert not masks[1].any() and scores[1] == 0
    # binary masks: Eq. 1 with mbar = 1 is sqrt(c)
    assert scores[0] == pytest.approx(math.sqrt(0.5), abs=1e-5)


def test_mask_aware_score_from_probabilities():
    gts = torch.tensor([[0., 0., 4., 4.]])
    probs = torch.zeros(1, 20, 20)
    probs[0, :2, :4] = 0.9  # 8 pixels inside the box
    probs[0, 2:4, :4] = 0.7  # 8 more
    probs[0, 10:, 10:] = 1.0  # outside the box: not counted
    assigned, masks, scores = tool.assign_masks(
        gts.clone(),
        torch.tensor([0.64]),
        probs > 0.5,
        gts,
        box_pixels(gts.tolist()),
        pred_probs=probs,
        mask_thr=0.5)
    assert assigned.tolist() == [0]
    assert scores[0] == pytest.approx(math.sqrt(0.64 * 0.8), abs=1e-5)
    assert masks[0].sum() == 16


def test_masks_are_clipped_to_their_box():
    hw = (20, 20)
    box = [2.5, 3.2, 7.1, 8.9]  # covers pixels x 2..7, y 3..8
    pred = dict(
        bboxes=torch.tensor([box]),
        confidences=torch.tensor([0.81]),
        masks=full_masks(1, hw),
        probs=None)
    result = tool.export_image(pred, [box], hw)
    expected = torch.zeros(hw, dtype=torch.bool)
    expected[3:9, 2:8] = True
    assert torch.equal(result['masks'][0], expected)
    assert result['source'].tolist() == [tool.MODEL]
    assert result['scores'][0] == pytest.approx(0.9, abs=1e-5)
    assert result['agreement'][0] == pytest.approx(1.0)
    # a mask with no pixel inside its box counts as unassigned ("empty")
    outside = pred | dict(masks=torch.zeros((1, *hw), dtype=torch.bool))
    outside['masks'][0, 15:, 15:] = True
    result = tool.export_image(outside, [box], hw)
    assert result['assigned'] == 1 and result['empty'] == 1
    assert result['source'].tolist() == [tool.NO_MASK]
    assert not result['masks'].any()
    # ... and gets its box with --box-fallback, scored 0
    result = tool.export_image(outside, [box], hw, box_fallback=True)
    assert result['source'].tolist() == [tool.BOX]
    assert torch.equal(result['masks'][0], expected)
    assert result['scores'].tolist() == [0.0]


def test_merge_gives_shared_pixels_to_the_smaller_box():
    hw = (20, 20)
    big, small = [0., 0., 12., 12.], [6., 6., 10., 10.]
    pred = dict(
        bboxes=torch.tensor([big, small]),
        confidences=torch.tensor([0.9, 0.8]),
        masks=full_masks(2, hw),
        probs=None)
    plain = tool.export_image(pred, [big, small], hw)
    assert (plain['masks'].sum(0) == 2).sum() == 16  # the small box
    merged = tool.export_image(pred, [big, small], hw, merge=True)
    masks = merged['masks']
    assert masks.sum(0).max() == 1  # disjoint
    assert masks[1].sum() == 16 and masks[0].sum() == 144 - 16
    assert not masks[0, 6:10, 6:10].any()
    assert merged['emptied'] == 0
    # a big-box mask wholly inside the small box is emptied and dropped
    inner = pred | dict(masks=full_masks(2, hw).clone())
    inner['masks'][0] = False
    inner['masks'][0, 7:9, 7:9] = True
    emptied = tool.export_image(inner, [big, small], hw, merge=True)
    assert emptied['emptied'] == 1
    assert emptied['source'].tolist() == [tool.NO_MASK, tool.MODEL]
    assert emptied['agreement'].tolist() == [0.0, 1.0]
    # box fallbacks take part in the merge
    lone = dict(
        bboxes=torch.tensor([big]),
        confidences=torch.tensor([0.9]),
        masks=full_masks(1, hw),
        probs=None)
    mixed = tool.export_image(
        lone, [big, small], hw, merge=True, box_fallback=True)
    assert mixed['source'].tolist() == [tool.MODEL, tool.BOX]
    assert mixed['masks'].sum(0).max() == 1 and mixed['masks'][1].sum() == 16


# -- end to end on the tiny toy set -----------------------------------------
@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    init = load_tool('tools/analysis_tools/init_checkpoint.py', 'init_ckpt')
    out = str(tmp_path_factory.mktemp('export_ckpt') / 'boxinst_init.pth')
    return init.save_init_checkpoint(TOY_CFG, out, seed=0)


def toy_input(tiny_toy, tmp_path):
    """The masked train file with every mask replaced by a value the tool
    would choke on if it read it, plus a crowd and a degenerate box."""
    content = read_json(
        osp.join(tiny_toy, 'annotations', 'instances_train_with_masks.json'))
    for ann in content['annotations']:
        ann['segmentation'] = SENTINEL
    next_id = max(a['id'] for a in content['annotations']) + 1
    img = content['images'][1]['id']
    content['annotations'] += [
        dict(
            id=next_id,
            image_id=img,
            category_id=1,
            bbox=[2, 2, 10, 10],
            area=100,
            iscrowd=1),
        dict(
            id=next_id + 1,
            image_id=img,
            category_id=1,
            bbox=[5, 5, 0.5, 8],
            area=4,
            iscrowd=0)
    ]
    path = str(tmp_path / 'boxes.json')
    with open(path, 'w') as f:
        json.dump(content, f)
    return path, content


def export(tiny_toy, ckpt, in_ann, out_ann, *extra):
    return tool.main([
        TOY_CFG, ckpt, in_ann, out_ann, '--img-prefix',
        osp.join(tiny_toy, 'images', 'train'), '--iou-thr', '0.0', *extra,
        *KEEP_ALL
    ])


def test_predictor_reads_condinst_probabilities(checkpoint, tiny_toy):
    from mmdet.apis import init_detector
    from mmengine.config import Config

    from mmboxseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(TOY_CFG)
    cfg.model.test_cfg.score_thr = 0.0
    model = init_detector(cfg, checkpoint, device='cpu')
    predictor = tool.PseudoMaskPredictor(model,
                                         tool.build_inference_pipeline(cfg))
    assert predictor.confidence == 'sqrt'  # FCOS head: cls * ctr
    img = mmcv.imread(osp.join(tiny_toy, 'images', 'train', '000000.png'))
    pred, = predictor.predict([(img, 1)])
    probs = pred['probs']
    assert isinstance(probs, tool.CondInstMaskProbs) and len(probs) == 50
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no mismatch warning
        full = probs[torch.arange(50)]
        part = probs[torch.tensor([7, 3])]
    assert full.shape == pred['masks'].shape == (50, 64, 64)
    assert torch.equal(full > pred['mask_thr'], pred['masks'])
    torch.testing.assert_close(part, full[[7, 3]])  # on demand, per mask
    # the heads are restored
    assert all('_predict_by_feat_single' not in m.__dict__
               for m in model.modules())
    # probabilities that disagree with the masks fall back to the masks
    wrong = tool.CondInstMaskProbs(
        model.mask_head, torch.full((2, 16, 16), 5.0),
        dict(img_shape=(64, 64), ori_shape=(64, 64)),
        torch.zeros(2, 64, 64, dtype=torch.bool), 0.5)
    with pytest.warns(UserWarning, match='differ from its masks'):
        assert not wrong[torch.tensor([0])].any()
    # SOLOv2 predicts all-zero boxes: replaced by the masks' tight boxes
    assert not tool.PseudoMaskPredictor.has_boxes(torch.zeros(3, 4))
    assert tool.PseudoMaskPredictor.has_boxes(torch.zeros(0, 4))


def test_output_schema_and_mixed_supervision_round_trip(
        checkpoint, tiny_toy, tmp_path, capsys):
    from pycocotools.coco import COCO

    from mmboxseg.datasets.transforms.box_jitter_crop import crop_region
    from mmboxseg.registry import DATASETS
    in_ann, content = toy_input(tiny_toy, tmp_path)
    # the output's folder does not exist yet: the tool makes it
    out_ann = str(tmp_path / 'not_yet' / 'pseudo.json')
    stats = export(tiny_toy, checkpoint, in_ann, out_ann, '--merge')
    printed = capsys.readouterr().out
    assert 'coverage' in printed and 'images/s' in printed
    assert not osp.exists(out_ann + '.partial.jsonl')

    coco = COCO(out_ann)  # pycocotools reads it
    out = read_json(out_ann)
    assert out['images'] == content['images']
    assert out['categories'] == content['categories']
    ids = [a['id'] for a in content['annotations']]
    assert [a['id'] for a in out['annotations']] == ids
    sizes = {im['id']: (im['height'], im['width']) for im in out['images']}
    per_image, masked = {}, []
    for src, ann in zip(content['annotations'], out['annotations']):
        assert ann['bbox'] == src['bbox']  # boxes untouched
        assert ann.get('segmentation') != SENTINEL
        if 'segmentation' not in ann:
            assert 'pseudo_mask_score' not in ann
            continue
        masked.append(ann['id'])
        mask = coco.annToMask(coco.anns[ann['id']]).astype(bool)
        assert ann['area'] == mask.sum() > 0
        assert ann['pseudo_mask_source'] == 'model'
        assert 0 < ann['pseudo_mask_score'] <= 1
        assert 0 <= ann['proxy_box_agreement'] <= 1
        # inside the pixels of its box
        x0, y0, x1, y1 = crop_region([
            src['bbox'][0], src['bbox'][1], src['bbox'][0] + src['bbox'][2],
            src['bbox'][1] + src['bbox'][3]
        ], sizes[ann['image_id']])
        assert mask[y0:y1, x0:x1].sum() == mask.sum()
        per_image.setdefault(ann['image_id'], []).append(mask)
    for masks in per_image.values():  # merged: disjoint
        assert np.stack(masks).sum(0).max() <= 1
    # random weights at IoU >= 0: every box is assigned, some masks are
    # empty inside their box; crowd and degenerate boxes are skipped
    assert 0 < len(masked) < len(ids) - 2
    assert stats['skipped'] == 2 and stats['boxes'] == len(ids) - 2
    assert stats['model'] == stats['masks'] == len(masked)
    assert stats['assigned'] == stats['boxes']
    assert stats['model'] + stats['empty'] + stats['emptied'] == \
        stats['boxes']
    assert stats['coverage'] == pytest.approx(100 * len(masked) /
                                              stats['boxes'])

    # round trip: BoxCocoDataset with mixed supervision loads the masks of
    # the assigned boxes and empty masks for the others, and trains on them
    cfg = toy_config(tiny_toy, str(tmp_path / 'work'))
    cfg.train_dataloader.dataset.ann_file = out_ann
    cfg.model.mask_head.supervision = 'mixed'
    cfg.model.data_preprocessor.supervision = 'mixed'
    cfg.model.data_preprocessor.pad_mask = True
    pipeline = cfg.train_dataloader.dataset.pipeline
    next(t for t in pipeline if t.type == 'RandomFlip').prob = 0.0
    next(t for t in pipeline if t.type == 'LoadAnnotations').with_mask = True
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    seen = 0
    for i in range(len(dataset)):
        img_id = dataset.get_data_info(i)['img_id']
        anns = [
            a for a in out['annotations'] if a['image_id'] == img_id
            and not a.get('iscrowd') and a['bbox'][2] >= 1
        ]
        gt_masks = dataset[i]['data_samples'].gt_instances.masks.masks
        has_mask = gt_masks.reshape(len(gt_masks), -1).any(1)
        assert has_mask.tolist() == ['segmentation' in a for a in anns]
        seen += int(has_mask.sum())
    assert seen == len(masked)
    losses = batch_losses(cfg)
    assert losses['loss_mask'] > 0 and math.isfinite(losses['loss_mask'])
    assert {'loss_mask_project', 'loss_mask_pairwise'} <= set(losses)


def test_resume_after_interruption_is_byte_identical(checkpoint, tiny_toy,
                                                     tmp_path):
    in_ann, _ = toy_input(tiny_toy, tmp_path)
    gt_ann = osp.join(tiny_toy, 'annotations',
                      'instances_train_with_masks.json')
    opts = ('--merge', '--box-fallback', '--gt-ann', gt_ann, '--batch-size',
            '4')
    once = str(tmp_path / 'once.json')
    full = export(tiny_toy, checkpoint, in_ann, once, *opts)
    assert full['fallback'] > 0 and 'miou_fallback' in full

    resumed = str(tmp_path / 'resumed.json')
    partial = resumed + '.partial.jsonl'
    # stop in the middle of the second batch of 4 images
    stopped = export(tiny_toy, checkpoint, in_ann, resumed, *opts,
                     '--max-images', '6')
    assert stopped == dict(complete=False, images_done=6, images=12)
    assert not osp.exists(resumed)
    with open(partial) as f:
        assert len(f.read().splitlines()) == 1 + 6
    with open(partial, 'a') as f:  # a line torn by the interruption
        f.write('{"image_id": 99, "an')
    again = export(tiny_toy, checkpoint, in_ann, resumed, *opts, '--resume')
    with open(once, 'rb') as f, open(resumed, 'rb') as g:
        assert f.read() == g.read()
    assert not osp.exists(partial)
    for key in ('masks', 'fallback', 'miou', 'miou_model', 'miou_fallback'):
        assert again[key] == full[key]
    # a partial file of other options is refused, naming them
    export(tiny_toy, checkpoint, in_ann, resumed, *opts, '--max-images', '1')
    with pytest.raises(SystemExit, match='differs in iou_thr'):
        tool.main([
            TOY_CFG, checkpoint, in_ann, resumed, '--img-prefix',
            osp.join(tiny_toy, 'images', 'train'), '--iou-thr', '0.5', *opts,
            '--resume', *KEEP_ALL
        ])


# -- constructed set with fake predictions ----------------------------------
def constructed_set(tmp_path):
    """Two 20x20 images; ground-truth masks for the three boxes."""
    img_dir = tmp_path / 'imgs'
    for name in ('a.png', 'b.png'):
        mmcv.imwrite(np.full((20, 20, 3), 128, np.uint8), str(img_dir / name))
    gt = np.zeros((3, 20, 20), np.uint8)
    gt[0, 2:12, 2:7] = 1  # half of box 1 (10 x 10)
    gt[1, 14:16, 14:16] = 1  # a quarter of box 2 (4 x 4)
    gt[2, 1:4, 1:9] = 1  # box 3 ...
    gt[2, 4, 1:5] = 1  # ... not all of it
    boxes = [[2, 2, 10, 10], [14, 14, 4, 4], [1, 1, 8, 4], [0, 0, 0.4, 5]]
    content = dict(
        images=[
            dict(id=1, file_name='a.png', width=20, height=20),
            dict(id=2, file_name='b.png', width=20, height=20)
        ],
        categories=[dict(id=1, name='thing')],
        annotations=[
            dict(
                id=k + 1,
                image_id=1 if k < 2 else 2,
                category_id=1,
                bbox=box,
                area=box[2] * box[3],
                iscrowd=0) for k, box in enumerate(boxes)
        ])
    in_ann = str(tmp_path / 'in.json')
    with open(in_ann, 'w') as f:
        json.dump(content, f)
    from mmboxseg.utils.coco_masks import encode_mask
    for k in range(3):
        content['annotations'][k]['segmentation'] = encode_mask(gt[k])
    gt_ann = str(tmp_path / 'gt.json')
    with open(gt_ann, 'w') as f:
        json.dump(content, f)
    return in_ann, gt_ann, gt, str(img_dir)


def fake_predict(self, images):
    """Image 1: one prediction on box 1, mask = the whole image; image 2:
    one prediction on box 3, mask = its ground truth."""
    out = []
    for img, img_id in images:
        masks = torch.zeros((1, 20, 20), dtype=torch.bool)
        if img_id == 1:
            bbox, masks[:] = [2., 2., 12., 12.], True
        else:
            bbox = [1., 1., 9., 5.]
            masks[0, 1:4, 1:9] = True
            masks[0, 4, 1:5] = True
        out.append(
            dict(
                bboxes=torch.tensor([bbox]),
                confidences=torch.tensor([0.64]),
                masks=masks,
                probs=None,
                mask_thr=0.5))
    return out


def test_gt_ann_miou_matches_a_hand_computation(checkpoint, tmp_path,
                                                monkeypatch, capsys):
    in_ann, gt_ann, gt, img_dir = constructed_set(tmp_path)
    monkeypatch.setattr(tool.PseudoMaskPredictor, 'predict', fake_predict)
    out_ann = str(tmp_path / 'out.json')
    stats = tool.main([
        TOY_CFG, checkpoint, in_ann, out_ann, '--img-prefix', img_dir,
        '--gt-ann', gt_ann, '--box-fallback'
    ])
    # box 1: the whole image clipped to its 10 x 10 box vs its left half;
    # box 2: box fallback (16 px) vs 4 px; box 3: exactly its truth
    assert stats['miou_model'] == pytest.approx(100 * (50 / 100 + 1) / 2)
    assert stats['miou_fallback'] == pytest.approx(100 * 4 / 16)
    assert stats['miou'] == pytest.approx(100 * (0.5 + 0.25 + 1) / 3)
    assert stats['evaluated'] == 3 and stats['skipped'] == 1
    assert 'box fallbacks 25.00 (1)' in capsys.readouterr().out
    anns = {a['id']: a for a in read_json(out_ann)['annotations']}
    assert [anns[k].get('pseudo_mask_source')
            for k in (1, 2, 3, 4)] == ['model', 'box', 'model', None]
    assert anns[1]['pseudo_mask_score'] == pytest.approx(0.8, abs=1e-5)
    assert anns[2]['pseudo_mask_score'] == 0.0
    # box 3's mask is 28 px with tight box (1, 1, 9, 5): its box exactly
    assert anns[3]['area'] == 28 and anns[3]['proxy_box_agreement'] == 1.0
    assert 'segmentation' not in anns[4]  # degenerate: skipped


def test_bad_input_names_the_file_and_field(checkpoint, tmp_path, monkeypatch):
    in_ann, _, _, img_dir = constructed_set(tmp_path)
    monkeypatch.setattr(tool.PseudoMaskPredictor, 'predict', fake_predict)
    out_ann = str(tmp_path / 'out.json')
    args = [TOY_CFG, checkpoint, in_ann, out_ann, '--img-prefix', img_dir]
    content = read_json(in_ann)
    content['images'][1]['width'] = 21
    with open(in_ann, 'w') as f:
        json.dump(content, f)
    with pytest.raises(ValueError, match='`width`/`height` of image id 2'):
        tool.main(args)
    content['images'][1].update(width=20, file_name='missing.png')
    with open(in_ann, 'w') as f:
        json.dump(content, f)
    with pytest.raises(FileNotFoundError, match='missing.png.*image id 2'):
        tool.main(args)
    del content['annotations'][0]['bbox']
    with open(in_ann, 'w') as f:
        json.dump(content, f)
    from mmboxseg.datasets import AnnotationFileError
    with pytest.raises(AnnotationFileError, match=r'annotations\[0\].*bbox'):
        tool.main(args)
    with pytest.raises(SystemExit):
        tool.parse_args(args + ['--iou-thr', '1.5'])


def test_vis_dir_draws_model_masks_filled_and_fallbacks_outlined(tmp_path):
    """--vis-dir: a model mask's pixels are painted, a box fallback's
    interior is left as it is (only its outline is drawn)."""
    img = np.full((40, 40, 3), 128, np.uint8)
    mmcv.imwrite(img, str(tmp_path / 'a.png'))
    model = np.zeros((40, 40), bool)
    model[6:20, 6:20] = True
    fallback = np.zeros((40, 40), bool)
    fallback[22:36, 20:36] = True
    content = dict(
        images=[dict(id=1, file_name='a.png', height=40, width=40)],
        annotations=[
            dict(
                id=1,
                image_id=1,
                category_id=1,
                bbox=[6, 6, 14, 14],
                segmentation=tool.encode_mask(model),
                pseudo_mask_source='model',
                pseudo_mask_score=0.5,
                proxy_box_agreement=1.0),
            dict(
                id=2,
                image_id=1,
                category_id=2,
                bbox=[20, 22, 16, 14],
                segmentation=tool.encode_mask(fallback),
                pseudo_mask_source='box',
                pseudo_mask_score=0.0,
                proxy_box_agreement=1.0)
        ])
    tool.draw_exported(content, str(tmp_path), str(tmp_path / 'vis'), 4)
    out = mmcv.imread(str(tmp_path / 'vis' / 'a.png'))
    assert out.shape == img.shape
    changed = (out != img).any(-1)
    # the mask's bottom row, below the score text at its top-left corner
    assert changed[16, 8:18].all()
    assert not changed[28:34, 24:34].any()  # the fallback's interior
    assert changed[22, 20:36].any()  # its outline
