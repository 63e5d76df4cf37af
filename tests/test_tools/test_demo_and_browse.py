# Copyright (c) mmboxseg contributors. All rights reserved.
"""demo/image_demo.py and tools/analysis_tools/browse_dataset.py on the tiny
toy set with randomly initialised toy models."""
import json
import os
import os.path as osp
import warnings

import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config
from mmengine.structures import InstanceData
from pycocotools import mask as mask_utils

from mmboxseg.models.utils import strided_box_masks
from mmboxseg.registry import MODELS
from mmboxseg.utils import register_all_modules
from ..conftest import REPO, load_tool

register_all_modules()

TOY = dict(
    boxinst='configs/boxinst/boxinst_r18_fpn_toy.py',
    boxteacher='configs/boxteacher/boxteacher_r18_fpn_toy.py',
    sim='configs/sim/sim_r18_fpn_toy.py',
    discobox='configs/discobox/discobox_solov2_r18_fpn_toy.py',
    condinst='configs/condinst/condinst_r18_fpn_toy.py',
    segmenter='configs/boxcaseg/boxcaseg_segmenter_r18_toy.py')
CLASSES = ('ring', 'crescent', 'star', 'ell')


def cfg_path(name):
    return osp.join(REPO, TOY[name])


def demo():
    return load_tool('demo/image_demo.py', 'image_demo')


def browser():
    return load_tool('tools/analysis_tools/browse_dataset.py',
                     'browse_dataset')


def init_checkpoint(name, path, seed=0):
    """A randomly initialised toy model's weights, without dataset_meta
    (as tools/analysis_tools/init_checkpoint.py writes them)."""
    torch.manual_seed(seed)
    model = MODELS.build(Config.fromfile(cfg_path(name)).model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=seed)), path)
    return str(path)


def read_rgb(path):
    return mmcv.imread(path, channel_order='rgb')


def coloured(pixels):
    """Pixels that are not grey (R == G == B): the drawn masks."""
    return ~((pixels[..., 0] == pixels[..., 1]) &
             (pixels[..., 1] == pixels[..., 2]))


def panel(canvas, layout, title):
    y0, x0, h, w = layout[title]
    return canvas[y0:y0 + h, x0:x0 + w]


def upsampled(grid, factor, hw):
    up = np.repeat(np.repeat(grid, factor, axis=-2), factor, axis=-1)
    return up[..., :hw[0], :hw[1]]


# -- demo -------------------------------------------------------------------
@pytest.fixture(scope='module')
def demo_inputs(tiny_toy, tmp_path_factory):
    """Two val images of the tiny toy set and a non-square one."""
    folder = tmp_path_factory.mktemp('demo_inputs')
    for name in ('000000.png', '000001.png'):
        img = mmcv.imread(osp.join(tiny_toy, 'images/val', name))
        mmcv.imwrite(img, str(folder / name))
    mmcv.imwrite(mmcv.imresize(img, (80, 48)), str(folder / 'wide.png'))
    return str(folder)


def test_demo_condinst_family_overlays(demo_inputs, tmp_path, capsys):
    """BoxTeacher (CondInst family): one PNG per input at its size, the
    input itself where no prediction passes the threshold, painted where
    the saved masks are; class names from the config; the never-updated
    teacher is replaced by the student."""
    from mmboxseg.apis.inferencer import BoxSegInferencer
    ckpt = init_checkpoint('boxteacher', tmp_path / 'bt.pth')
    names = sorted(os.listdir(demo_inputs))

    out = str(tmp_path / 'none')
    demo().main([
        demo_inputs,
        cfg_path('boxteacher'), '--weights', ckpt, '--out-dir', out,
        '--device', 'cpu', '--pred-score-thr', '1.01'
    ])
    assert sorted(os.listdir(osp.join(out, 'vis'))) == names
    for name in names:
        src = read_rgb(osp.join(demo_inputs, name))
        vis = read_rgb(osp.join(out, 'vis', name))
        assert vis.shape == src.shape
        # nothing scores above 1.01: the overlay is the image itself
        np.testing.assert_array_equal(vis, src)
    # ... and the demo says so, image by image, with the best score
    printed = capsys.readouterr().out
    assert '0 instance(s) drawn over 3 image(s) at score >= 1.01' in printed
    for name in names:
        line = next(line for line in printed.splitlines()
                    if line.startswith(osp.join(demo_inputs, name)))
        assert 'nothing drawn' in line and 'best score 0.' in line

    out = str(tmp_path / 'all')
    demo().main([
        demo_inputs,
        cfg_path('boxteacher'), '--weights', ckpt, '--out-dir', out,
        '--device', 'cpu', '--pred-score-thr', '0', '--batch-size', '2'
    ])
    printed = capsys.readouterr().out
    assert 'nothing drawn' not in printed
    for name in names:
        src = read_rgb(osp.join(demo_inputs, name))
        vis = read_rgb(osp.join(out, 'vis', name))
        assert vis.shape == src.shape
        with open(osp.join(out, 'preds', name.replace('.png', '.json'))) as f:
            pred = json.load(f)
        assert len(pred['masks']) == len(pred['scores']) > 0
        assert all(0 <= label < len(CLASSES) for label in pred['labels'])
        masks = mask_utils.decode(pred['masks'])  # [H, W, N]
        assert masks.shape[:2] == src.shape[:2]
        union = masks.any(axis=-1)
        assert union.any()
        changed = (vis != src).any(axis=-1)
        assert changed[union].mean() > 0.9

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        inferencer = BoxSegInferencer(
            cfg_path('boxteacher'), ckpt, device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == CLASSES
    assert inferencer.model.inference_with == 'student'
    assert any('ema_updates == 0' in str(w.message) for w in caught)
    forced = BoxSegInferencer(
        cfg_path('boxteacher'),
        ckpt,
        device='cpu',
        show_progress=False,
        inference_with='teacher')
    assert forced.model.inference_with == 'teacher'


def test_demo_discobox(demo_inputs, tmp_path):
    """DiscoBox (SOLOv2): a single image in, its overlay and masks out."""
    ckpt = init_checkpoint('discobox', tmp_path / 'db.pth')
    image = osp.join(demo_inputs, 'wide.png')
    out = str(tmp_path / 'out')
    results = demo().main([
        image,
        cfg_path('discobox'), '--weights', ckpt, '--out-dir', out, '--device',
        'cpu', '--pred-score-thr', '0'
    ])
    assert os.listdir(osp.join(out, 'vis')) == ['wide.png']
    src = read_rgb(image)
    vis = read_rgb(osp.join(out, 'vis', 'wide.png'))
    assert vis.shape == src.shape == (48, 80, 3)
    pred = results['predictions'][0]
    assert len(pred['masks']) == len(pred['scores'])
    if pred['masks']:
        union = mask_utils.decode(pred['masks']).any(axis=-1)
        assert union.shape == (48, 80)
        if union.any():
            assert (vis != src).any(axis=-1)[union].mean() > 0.9


def test_demo_refuses_segmenter_and_missing_files(demo_inputs, tmp_path):
    with pytest.raises(ValueError) as err:
        demo().main([demo_inputs, cfg_path('segmenter')])
    message = str(err.value)
    assert 'boxcaseg_segmenter_r18_toy.py' in message
    assert 'not an image detector' in message
    assert 'configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py' in message
    with pytest.raises(FileNotFoundError, match='nowhere.png'):
        demo().main([str(tmp_path / 'nowhere.png'), cfg_path('boxinst')])
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='no images'):
        demo().main([str(empty), cfg_path('boxinst')])
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        demo().main([
            demo_inputs,
            cfg_path('boxinst'), '--weights',
            str(tmp_path / 'missing.pth')
        ])


# -- browse_dataset ---------------------------------------------------------
def browse(tiny_toy, tmp_path, name, **kwargs):
    kwargs.setdefault('num_images', 2)
    return browser().browse(
        cfg_path(name),
        output_dir=str(tmp_path / f'browse_{name}'),
        cfg_options={'train_dataloader.dataset.data_root': tiny_toy + '/'},
        **kwargs)


def test_browse_box_masks_equal_strided_box_masks(tiny_toy, tmp_path):
    """Without a checkpoint: one PNG per image whose box-mask panel is
    exactly the union of strided_box_masks of the boxes, nearest
    up-sampled; the edge panel is the heat map of the record's counts."""
    tool = browser()
    outputs = browse(tiny_toy, tmp_path, 'boxinst', num_images=3, scale=2)
    assert len(outputs) == 3
    assert sorted(os.listdir(tmp_path / 'browse_boxinst')) == sorted(
        osp.basename(o['file']) for o in outputs)
    for out in outputs:
        record, layout, titles = out['record'], out['layout'], out['titles']
        scale = out['scale']
        canvas = read_rgb(out['file'])
        h, w = record['image'].shape[:2]
        grid = record['box_masks'].shape[-2:]
        expected = strided_box_masks(
            torch.from_numpy(record['boxes']), grid, 4).numpy()
        np.testing.assert_array_equal(record['box_masks'], expected)
        masks = panel(canvas, layout, titles['box_masks'])
        assert masks.shape[:2] == (h * scale, w * scale)
        union = upsampled(
            expected.any(axis=0), 4 * scale, (h * scale, w * scale))
        np.testing.assert_array_equal(coloured(masks), union)
        # the edge panel: heat colour of counts / 8 in the boxes
        edges = panel(canvas, layout, titles['edges'])
        cells = np.argwhere(expected.any(axis=0) & record['image_valid'])
        i, j = cells[len(cells) // 2]
        y, x = (4 * i + 1) * scale, (4 * j + 1) * scale
        if not (edges[y, x] == 255).all():  # not on a box outline
            want = tool.heat_colours(record['edge_counts'][i, j] / 8)
            np.testing.assert_array_equal(edges[y, x], want)


def two_colour_item(box):
    """A 64 x 64 image, red left half and blue right half (BGR raw input,
    as the loader gives), with one box."""
    img = torch.zeros(3, 64, 64, dtype=torch.uint8)
    img[2, :, :32] = 255  # red (BGR channel 2)
    img[0, :, 32:] = 255  # blue
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(64, 64), ori_shape=(64, 64), img_path='two.png'))
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor([box], dtype=torch.float32)),
        labels=torch.tensor([0]))
    return dict(inputs=img, data_samples=sample)


def test_box_masks_and_edges_on_two_colour_image():
    """Hand-checked values: box (9, 13, 30, 41) covers the stride-4 cells
    whose centre 4i + 2 lies in [13, 41] x [9, 30], i.e. rows 3-9 and
    columns 2-7; edges pass within a uniform colour and fail across the
    red/blue border (cells 6 and 7 have 3 blue neighbours at distance 2)
    and towards the image border (no neighbour)."""
    tool = browser()
    cfg = Config.fromfile(cfg_path('boxinst'))
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    record = tool.collect([two_colour_item([9, 13, 30, 41])],
                          preprocessor,
                          thr=0.3)[0]
    expected = np.zeros((16, 16), dtype=bool)
    expected[3:10, 2:8] = True
    np.testing.assert_array_equal(record['box_masks'][0], expected)

    counts = record['edge_counts']
    assert counts.shape == (16, 16)
    assert counts[5, 3] == 8 and counts[5, 12] == 8  # inside red / blue
    assert counts[5, 6] == counts[5, 7] == 5  # 3 neighbours across
    assert counts[5, 8] == counts[5, 9] == 5
    assert counts[0, 3] == 5  # top row: no neighbour above
    assert counts[0, 0] == 3  # corner
    # the whole map, by hand: 8 minus the neighbours off the image or
    # across the colour border, per axis
    idx = np.arange(16)
    off = (idx < 2).astype(int) + (idx > 13)
    cross = ((idx >= 6) & (idx <= 9)).astype(int)
    col_fail = np.maximum(off, cross)  # left/right neighbour columns
    rows_ok = 3 - off  # of the 3 neighbour rows, those on the image
    cols_ok = 3 - col_fail
    want = rows_ok[:, None] * cols_ok[None, :] - 1
    np.testing.assert_array_equal(counts, want)

    scale = 2
    canvas, layout, titles, _ = tool.render(record, scale)
    # box-mask panel: exactly the cells rows 3-9 x cols 2-7, as 8-px blocks
    masks = panel(canvas, layout, titles['box_masks'])
    drawn = coloured(masks)
    assert drawn[24:80, 16:64].all()
    assert drawn.sum() == 56 * 48
    colour = tool.instance_colours(1)[0]
    np.testing.assert_array_equal(masks[24, 16], colour)
    np.testing.assert_array_equal(masks[79, 63], colour)
    assert not drawn[23, 16] and not drawn[24, 15]
    assert not drawn[80, 63] and not drawn[79, 64]
    # edge panel: heat colour of count / 8 in the box, dimmed outside
    edges = panel(canvas, layout, titles['edges'])

    def cell_colour(i, j):
        return edges[(4 * i + 1) * scale, (4 * j + 1) * scale]

    np.testing.assert_array_equal(cell_colour(5, 3), tool.heat_colours(1.0))
    np.testing.assert_array_equal(cell_colour(5, 6), tool.heat_colours(5 / 8))
    dimmed = (tool.heat_colours(1.0).astype(np.float32) * tool.DIM).astype(
        np.uint8)
    np.testing.assert_array_equal(cell_colour(5, 12), dimmed)


@pytest.mark.parametrize('name', ['boxteacher', 'sim', 'discobox'])
def test_browse_pseudo_masks_with_checkpoint(tiny_toy, tmp_path, name):
    """With a checkpoint: one training forward fills the pseudo-mask panel
    from model.last_pseudo_masks (inside the box masks), drawn exactly;
    the teacher of an initial checkpoint is set to the student and
    DiscoBox's closed gate is forced open, both noted; every batch starts
    from the checkpoint's state."""
    ckpt = init_checkpoint(name, tmp_path / f'{name}.pth')
    outputs = browse(
        tiny_toy, tmp_path, name, checkpoint=ckpt, batch_size=1, scale=2)
    assert len(outputs) == 2
    for out in outputs:
        record, layout, titles = out['record'], out['layout'], out['titles']
        notes = ' '.join(record['notes'])
        assert 'ema_updates == 0' in notes
        pseudo = record['pseudo']
        assert pseudo is not None and pseudo['masks'] is not None
        assert 'pseudo' in titles and titles['pseudo'] in layout
        masks, valid = pseudo['masks'], pseudo['valid']
        assert masks.shape == record['box_masks'].shape
        assert valid.shape == (len(record['boxes']), )
        assert not (masks & ~record['box_masks']).any()
        assert f'({int(valid.sum())}/{len(valid)})' in titles['pseudo']
        canvas = read_rgb(out['file'])
        h, w = record['image'].shape[:2]
        drawn = coloured(panel(canvas, layout, titles['pseudo']))
        union = upsampled((masks & valid[:, None, None]).any(axis=0),
                          4 * out['scale'], (h * 2, w * 2))
        np.testing.assert_array_equal(drawn, union)
        if name == 'discobox':
            assert 'forced open' in notes
            # the initial running MIL loss (2.0), for both batches
            assert 'gate closed at this checkpoint (MIL running avg 2.000' \
                in notes
            # every instance with a positive cell gets a (voted) label
            assert valid.any()
        if name == 'sim':
            assert 'copy-paste off' in notes
            assert 'off until step 200 (step 0)' in notes
        if name == 'boxteacher':
            # the student view is shown, the teacher view too
            assert titles['image'] == 'student view + boxes'
            assert titles['teacher'] in layout
            if not valid.any():
                assert any('no box got a pseudo mask' in line
                           for line in out['footer'])


def test_browse_boxinst_checkpoint_shows_predictions(tiny_toy, tmp_path):
    """BoxInst keeps no pseudo masks: the predicted masks are drawn, and
    labelled as predictions."""
    ckpt = init_checkpoint('boxinst', tmp_path / 'boxinst.pth')
    out = browse(
        tiny_toy,
        tmp_path,
        'boxinst',
        checkpoint=ckpt,
        num_images=1,
        scale=2,
        pred_score_thr=0.0)[0]
    record, layout, titles = out['record'], out['layout'], out['titles']
    assert record['pseudo'] is None and 'pseudo' not in titles
    assert titles['prediction'] == 'BoxInst predicted masks'
    assert any('keeps no pseudo masks' in line for line in out['footer'])
    pred = record['prediction']['masks']
    h, w = record['image'].shape[:2]
    assert pred.shape[1:] == (h, w)
    canvas = read_rgb(out['file'])
    drawn = coloured(panel(canvas, layout, titles['prediction']))
    union = upsampled(pred.any(axis=0), 2, (h * 2, w * 2))
    np.testing.assert_array_equal(drawn, union)


def test_paint_masks_order_and_empty():
    """Larger masks first, so a small one stays visible on top; no mask
    leaves the canvas as it is."""
    tool = browser()
    canvas = np.zeros((4, 4, 3), dtype=np.uint8)
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 1:2, 1:2] = True  # small, first
    masks[1] = True  # whole canvas
    colours = tool.instance_colours(2)
    out = tool.paint_masks(canvas.copy(), masks, colours)
    np.testing.assert_array_equal(out[1, 1], colours[0])
    np.testing.assert_array_equal(out[0, 0], colours[1])
    empty = tool.paint_masks(canvas.copy(), masks[:0],
                             tool.instance_colours(0))
    np.testing.assert_array_equal(empty, canvas)


def test_browse_refuses_configs_without_box_supervision(tmp_path):
    tool = browser()
    with pytest.raises(ValueError, match='DetDataPreprocessor'):
        tool.browse(cfg_path('condinst'), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match='BoxCaseg segmenter'):
        tool.browse(cfg_path('segmenter'), output_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        tool.browse(
            cfg_path('boxinst'),
            checkpoint=str(tmp_path / 'missing.pth'),
            output_dir=str(tmp_path))
