# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg's data: box crops with jitter, overlap flags, the box:salient
batch ratio and the overlap drop."""
import json
from collections import Counter

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset

from mmboxseg.datasets import BoxCropDataset
from mmboxseg.datasets.samplers import BoxSalientRatioSampler
from mmboxseg.datasets.transforms.box_jitter_crop import (BoxJitterCrop,
                                                          box_label_map,
                                                          crop_region,
                                                          jitter_box)
from mmboxseg.utils import register_all_modules

register_all_modules()


def test_jitter_box_ranges():
    rng = np.random.default_rng(0)
    box = [10.0, 20.0, 50.0, 40.0]  # centre (30, 30), half sizes 20 x 10
    out = np.stack(
        [jitter_box(box, rng, 0.25, (0.5, 1.5)) for _ in range(4000)])
    cx, cy = (out[:, 0] + out[:, 2]) / 2, (out[:, 1] + out[:, 3]) / 2
    hw, hh = (out[:, 2] - out[:, 0]) / 2, (out[:, 3] - out[:, 1]) / 2
    # centre within +-0.25 half sizes, half sizes scaled by [0.5, 1.5]
    assert np.abs(cx - 30).max() <= 0.25 * 20 + 1e-9
    assert np.abs(cy - 30).max() <= 0.25 * 10 + 1e-9
    assert np.abs(cx - 30).max() > 0.24 * 20
    assert hw.min() >= 10 - 1e-9 and hw.max() <= 30 + 1e-9
    assert hh.min() >= 5 - 1e-9 and hh.max() <= 15 + 1e-9
    assert hw.min() < 10.5 and hw.max() > 29.5
    # the two axes scale independently
    assert abs(np.corrcoef(hw, hh)[0, 1]) < 0.1


def test_crop_region_and_label_map():
    assert crop_region([2.5, 3.0, 7.2, 9.0], (10, 8)).tolist() == [2, 3, 8, 9]
    assert crop_region([-4, -4, 2, 2], (10, 10)).tolist() == [0, 0, 2, 2]
    label = box_label_map([3.0, 2.0, 6.0, 5.0], np.array([1, 1, 8, 6]))
    expected = np.zeros((5, 7), np.uint8)
    expected[1:4, 2:5] = 1
    np.testing.assert_array_equal(label, expected)
    # a crop inside the box is all positive (no negative bags)
    inner = box_label_map([0.0, 0.0, 10.0, 10.0], np.array([2, 2, 6, 6]))
    assert inner.all()


def test_exact_crop_with_mask():
    img = np.arange(12 * 16 * 3, dtype=np.uint8).reshape(12, 16, 3)
    rle_mask = np.zeros((12, 16), np.uint8)
    rle_mask[3:6, 4:9] = 1
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle['counts'] = rle['counts'].decode()
    out = BoxJitterCrop(jitter=False)(
        dict(img=img, crop_box=[4.0, 3.0, 9.0, 6.0], gt_mask=rle))
    np.testing.assert_array_equal(out['img'], img[3:6, 4:9])
    assert out['crop_shape'] == (3, 5) and out['img_shape'] == (3, 5)
    assert out['gt_seg_map'].all() and out['gt_crop_mask'].all()
    assert out['crop_region'].tolist() == [4, 3, 9, 6]
    assert 'gt_seg_map' in out['seg_fields']
    # polygons decode too
    poly = [[4, 3, 9, 3, 9, 6, 4, 6]]
    out = BoxJitterCrop(jitter=False)(
        dict(img=img, crop_box=[4.0, 3.0, 9.0, 6.0], gt_mask=poly))
    assert out['gt_crop_mask'].shape == (3, 5)


def test_jittered_crop_label_marks_the_original_box():
    img = np.zeros((64, 64, 3), np.uint8)
    t = BoxJitterCrop(seed=3)
    box = [20.0, 24.0, 40.0, 36.0]
    for _ in range(20):
        out = t(dict(img=img, crop_box=box))
        x0, y0, x1, y1 = out['crop_region']
        full = np.zeros((64, 64), np.uint8)
        full[24:36, 20:40] = 1
        np.testing.assert_array_equal(out['gt_seg_map'], full[y0:y1, x0:x1])


def write_coco(tmp_path, anns, masks=False):
    images = [dict(id=1, file_name='a.png', width=64, height=48)]
    for i, a in enumerate(anns):
        a.setdefault('id', i + 1)
        a.setdefault('image_id', 1)
        a.setdefault('category_id', 1)
        if masks:
            x, y, w, h = a['bbox']
            a['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    content = dict(
        images=images,
        annotations=anns,
        categories=[dict(id=1, name='thing'),
                    dict(id=2, name='other')])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(content))
    import cv2
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((48, 64, 3), np.uint8))
    return str(path)


def test_box_crop_dataset_flags_and_box_only(tmp_path):
    anns = [
        dict(bbox=[0, 0, 20, 20]),
        dict(bbox=[2, 2, 20, 20]),  # IoU with the first 0.68
        dict(bbox=[40, 30, 10, 10], category_id=2),
        dict(bbox=[30, 0, 8, 8], iscrowd=1),  # crowd: no sample
    ]
    path = write_coco(tmp_path, anns, masks=True)
    ds = BoxCropDataset(
        ann_file=path,
        data_prefix=dict(img=str(tmp_path)),
        metainfo=dict(classes=('thing', 'other')),
        pipeline=[])
    assert len(ds) == 3
    infos = [ds.get_data_info(i) for i in range(3)]
    assert [i['overlapped'] for i in infos] == [True, True, False]
    assert [i['bbox_label'] for i in infos] == [0, 0, 1]
    assert infos[0]['crop_box'] == [0.0, 0.0, 20.0, 20.0]
    assert all(i['source'] == 'box' for i in infos)
    # box-only by default: masks in the file are not carried
    assert all('gt_mask' not in i for i in infos)
    assert ds.num_overlapped() == 2
    assert [ds.get_cat_ids(i) for i in range(3)] == [[0], [0], [1]]
    ds_eval = BoxCropDataset(
        ann_file=path,
        data_prefix=dict(img=str(tmp_path)),
        metainfo=dict(classes=('thing', 'other')),
        with_mask=True,
        test_mode=True,
        pipeline=[])
    assert all('gt_mask' in ds_eval.get_data_info(i) for i in range(3))


def test_unlisted_categories_are_counted_and_warned(tmp_path, monkeypatch):
    import logging

    import mmboxseg.datasets.box_coco_dataset as bcd
    logged = []
    monkeypatch.setattr(bcd, 'print_log', lambda msg, **kw: logged.append(
        (msg, kw)))
    anns = [
        dict(bbox=[0, 0, 20, 20]),
        dict(bbox=[40, 30, 10, 10], category_id=2)
    ]
    path = write_coco(tmp_path, anns)
    ds = BoxCropDataset(
        ann_file=path,
        data_prefix=dict(img=str(tmp_path)),
        metainfo=dict(classes=('thing', )),
        pipeline=[])
    assert len(ds) == 1
    warnings = [(m, kw) for m, kw in logged
                if kw.get('level') == logging.WARNING]
    assert len(warnings) == 1
    assert 'skipped 1 annotations' in warnings[0][0]
    assert '`category_id`' in warnings[0][0] and path in warnings[0][0]


def test_eval_crops_without_masks_name_the_field(tmp_path):
    path = write_coco(tmp_path, [dict(bbox=[0, 0, 20, 20])])
    from mmboxseg.datasets import AnnotationFileError
    with pytest.raises(AnnotationFileError, match='segmentation.*image id 1'):
        BoxCropDataset(
            ann_file=path,
            data_prefix=dict(img=str(tmp_path)),
            metainfo=dict(classes=('thing', )),
            with_mask=True,
            pipeline=[])


def test_min_size_filter(tmp_path):
    path = write_coco(tmp_path,
                      [dict(bbox=[0, 0, 20, 20]),
                       dict(bbox=[30, 30, 3, 9])])
    ds = BoxCropDataset(
        ann_file=path,
        data_prefix=dict(img=str(tmp_path)),
        metainfo=dict(classes=('thing', )),
        filter_cfg=dict(min_size=4),
        pipeline=[])
    assert len(ds) == 1


class ToySource(BaseDataset):
    METAINFO = dict(classes=('x', ))

    def __init__(self, n, overlapped=None):
        self.n, self.flags = n, overlapped
        super().__init__(serialize_data=False, lazy_init=False)

    def load_data_list(self):
        return [
            dict(k=k, overlapped=bool(self.flags[k]) if self.flags else False)
            for k in range(self.n)
        ]


def test_sampler_keeps_the_ratio_in_every_batch():
    concat = ConcatDataset([ToySource(50), ToySource(11)])
    sampler = BoxSalientRatioSampler(concat, batch_size=16, seed=0)
    it = iter(sampler)
    seen = Counter()
    for _ in range(40):
        batch = [next(it) for _ in range(16)]
        n_box = sum(i < 50 for i in batch)
        # the release's COCO ratio, 0.6875 (train_cd.sh) = 11:5
        assert (n_box, 16 - n_box) == (11, 5)
        seen.update(batch)
    # every sample of both sources is drawn (no source starves)
    assert set(seen) == set(range(61))
    # other ratios and their limits
    s = BoxSalientRatioSampler(concat, batch_size=8, source_ratio=[11, 5])
    assert s.num_per_source == [6, 2]
    # the paper's best ratio (Table 5)
    s = BoxSalientRatioSampler(concat, batch_size=16, source_ratio=[9, 7])
    assert s.num_per_source == [9, 7]
    with pytest.raises(ValueError, match='without samples'):
        BoxSalientRatioSampler(concat, batch_size=2, source_ratio=[14, 2])


def test_sampler_drops_overlapped_boxes():
    flags = [k % 2 == 0 for k in range(40)]  # even indices overlapped
    concat = ConcatDataset([ToySource(40, flags), ToySource(10)])
    counts = {}
    for p in (0.0, 0.75):
        sampler = BoxSalientRatioSampler(
            concat, batch_size=16, overlap_drop_prob=p, seed=0)
        it = iter(sampler)
        c = Counter()
        for _ in range(400):
            for i in [next(it) for _ in range(16)]:
                if i < 40:
                    c['overlapped' if flags[i] else 'free'] += 1
        counts[p] = c['overlapped'] / c['free']
    assert counts[0.0] == pytest.approx(1.0, abs=0.02)
    # a pass keeps 25 % of the overlapped boxes and all free ones
    assert counts[0.75] == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match='overlap_drop_prob'):
        BoxSalientRatioSampler(concat, batch_size=16, overlap_drop_prob=1.0)


def test_sampler_ratio_is_deterministic_with_seed():
    concat = ConcatDataset([ToySource(30), ToySource(9)])
    # the global seed differs between the two: only the sampler's counts
    torch.manual_seed(0)
    a = iter(BoxSalientRatioSampler(concat, 16, seed=5))
    first = [next(a) for _ in range(64)]
    torch.manual_seed(1)
    b = iter(BoxSalientRatioSampler(concat, 16, seed=5))
    assert first == [next(b) for _ in range(64)]
    c = iter(BoxSalientRatioSampler(concat, 16, seed=6))
    assert first != [next(c) for _ in range(64)]


def test_sampler_overlap_drop_splits_one_stream_across_ranks(monkeypatch):
    import mmdet.datasets.samplers.multi_source_sampler as mss
    flags = [k % 3 == 0 for k in range(30)]
    concat = ConcatDataset([ToySource(30, flags), ToySource(9)])

    def box_stream(rank, world_size, n):
        monkeypatch.setattr(mss, 'get_dist_info', lambda: (rank, world_size))
        sampler = BoxSalientRatioSampler(
            concat, 16, overlap_drop_prob=0.5, seed=3)
        return [next(sampler.source2inds[0]) for _ in range(n)]

    single = box_stream(0, 1, 200)
    rank0, rank1 = box_stream(0, 2, 100), box_stream(1, 2, 100)
    # the ranks take alternate items of the same dropped stream: no box is
    # seen twice per pass across ranks and none is lost
    assert rank0 == single[0::2] and rank1 == single[1::2]
    # and the stream really drops: 1/3 of the boxes are overlapped, ~1/5
    # of the stream after dropping half of them
    frac = np.mean([flags[i] for i in single])
    assert 0.1 < frac < 0.28


def test_sampler_rejects_an_empty_source():
    with pytest.raises(ValueError, match=r'sizes \[5, 0\]'):
        BoxSalientRatioSampler(
            ConcatDataset([ToySource(5), ToySource(0)]), batch_size=16)
