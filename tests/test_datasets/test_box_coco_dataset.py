# Copyright (c) mmboxseg contributors. All rights reserved.
"""Bad and partial annotation files: a clear error or a counted skip."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.logging import MMLogger

from mmboxseg.datasets import AnnotationFileError, BoxCocoDataset
from mmboxseg.utils import register_all_modules

register_all_modules()

CLASSES = ('a', 'b')


def write_png(path, h=40, w=50):
    import cv2
    cv2.imwrite(path, np.full((h, w, 3), 127, np.uint8))


def rle(h, w, y0, y1, x0, x1):
    from pycocotools import mask as mask_utils
    m = np.zeros((h, w), np.uint8, order='F')
    m[y0:y1, x0:x1] = 1
    enc = mask_utils.encode(m)
    enc['counts'] = enc['counts'].decode()
    return enc


def make_file(tmp_path, anns, images=None, name='ann.json'):
    img_dir = tmp_path / 'img'
    img_dir.mkdir(exist_ok=True)
    images = images or [
        dict(id=1, file_name='1.png', width=50, height=40),
        dict(id=2, file_name='2.png', width=50, height=40),
    ]
    for img in images:
        if not (img_dir / img['file_name']).exists():
            write_png(str(img_dir / img['file_name']))
    content = dict(
        images=images,
        annotations=anns,
        categories=[dict(id=1, name='a'),
                    dict(id=2, name='b')])
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


def box(i, img, bbox, cat=1, **kw):
    return dict(id=i, image_id=img, category_id=cat, bbox=bbox, **kw)


def build(ann_file, tmp_path, test_mode=False, pipeline=(), **kw):
    return BoxCocoDataset(
        ann_file=ann_file,
        data_prefix=dict(img=str(tmp_path / 'img') + '/'),
        metainfo=dict(classes=CLASSES),
        filter_cfg=dict(filter_empty_gt=True),
        test_mode=test_mode,
        pipeline=list(pipeline),
        **kw)


def test_bad_boxes_are_clipped_skipped_and_counted(tmp_path, caplog):
    anns = [
        box(1, 1, [5, 5, 10, 10]),  # fine
        box(2, 1, [5, 5, 0.5, 10]),  # degenerate width
        box(3, 1, [5, 5, 10, 0]),  # degenerate height
        box(4, 1, [-10, 30, 20, 20]),  # partly outside: clipped
        box(5, 1, [60, 5, 10, 10]),  # wholly outside: skipped
        box(6, 1, [49.5, 5, 10, 10]),  # clipped to 0.5 px: degenerate
        box(7, 1, [1, 1, 30, 30], iscrowd=1),  # crowd: ignored instance
    ]
    ds = build(make_file(tmp_path, anns), tmp_path)
    # image 2 has no annotation: dropped from training (filter_empty_gt)
    assert len(ds) == 1
    inst = ds.get_data_info(0)['instances']
    assert [i['bbox'] for i in inst] == [[5, 5, 15, 15], [0, 30, 10, 40],
                                         [1, 1, 31, 31]]
    assert [i['ignore_flag'] for i in inst] == [0, 0, 1]
    c = ds.skip_counts
    assert (c['degenerate'], c['outside image'], c['clipped'], c['crowd'],
            c['images without boxes']) == (3, 1, 2, 1, 1)


def test_summary_is_logged(tmp_path):
    logger = MMLogger.get_current_instance()
    records = []
    handler = type('H', (), {})
    import logging

    class ListHandler(logging.Handler):

        def emit(self, record):
            records.append(record.getMessage())

    handler = ListHandler()
    logger.addHandler(handler)
    try:
        build(
            make_file(tmp_path, [box(1, 1, [5, 5, 0.2, 3])]),
            tmp_path,
            test_mode=True)
    finally:
        logger.removeHandler(handler)
    assert any('skipped 1 degenerate' in r and 'ann.json' in r
               for r in records), records


def test_images_without_objects_are_kept_for_evaluation(tmp_path):
    ds = build(
        make_file(tmp_path, [box(1, 1, [5, 5, 10, 10])]),
        tmp_path,
        test_mode=True)
    assert len(ds) == 2
    assert ds.get_data_info(1)['instances'] == []


@pytest.mark.parametrize('content,field', [
    ('{"images": [', 'not valid JSON'),
    ('[]', '<root>'),
    ('{"images": [], "annotations": []}', 'categories'),
    (json.dumps(
        dict(
            images=[dict(id=1, file_name='1.png', width=50)],
            annotations=[],
            categories=[])), 'images[0].height'),
    (json.dumps(
        dict(
            images=[dict(id=1, file_name='1.png', width=50, height=40)],
            annotations=[
                dict(id=9, image_id=1, category_id=1, bbox=[1, 2, 3])
            ],
            categories=[dict(id=1, name='a')])), 'annotations[0] (id 9).bbox'),
    (json.dumps(
        dict(
            images=[dict(id=1, file_name='1.png', width=50, height=40)],
            annotations=[
                dict(id=9, image_id=7, category_id=1, bbox=[1, 2, 3, 4])
            ],
            categories=[dict(id=1, name='a')])), 'image_id'),
    (json.dumps(
        dict(
            images=[dict(id=1, file_name='1.png', width=50, height=40)],
            annotations=[dict(id=9, image_id=1, bbox=[1, 2, 3, 4])],
            categories=[dict(id=1, name='a')])), 'category_id'),
])
def test_malformed_files_name_file_and_field(tmp_path, content, field):
    path = tmp_path / 'broken.json'
    path.write_text(content)
    with pytest.raises(AnnotationFileError) as err:
        build(str(path), tmp_path)
    assert 'broken.json' in str(err.value) and field in str(err.value)


def test_duplicate_annotation_ids(tmp_path):
    anns = [box(1, 1, [5, 5, 10, 10]), box(1, 2, [5, 5, 10, 10])]
    with pytest.raises(AnnotationFileError, match='not unique'):
        build(make_file(tmp_path, anns), tmp_path)


def test_missing_image_file_names_image_and_annotation_file(tmp_path):
    ann_file = make_file(tmp_path, [box(1, 1, [5, 5, 10, 10])])
    (tmp_path / 'img' / '2.png').unlink()
    with pytest.raises(FileNotFoundError) as err:
        build(ann_file, tmp_path, test_mode=True)
    assert '2.png' in str(err.value) and 'ann.json' in str(err.value)


def test_partial_masks_load_where_mmdet_fails(tmp_path):
    from mmdet.datasets import CocoDataset
    anns = [
        box(1,
            1, [5, 5, 10, 10],
            segmentation=rle(40, 50, 6, 12, 6, 12),
            area=36),
        box(2, 1, [20, 20, 10, 10], area=100),  # no segmentation
    ]
    ann_file = make_file(tmp_path, anns)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
    ]
    mmdet_ds = CocoDataset(
        ann_file=ann_file,
        data_prefix=dict(img=str(tmp_path / 'img') + '/'),
        metainfo=dict(classes=CLASSES),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=pipeline)
    with pytest.raises(KeyError, match='mask'):
        mmdet_ds[0]
    ds = build(ann_file, tmp_path, pipeline=pipeline)
    results = ds[0]
    masks = results['gt_masks'].masks
    assert masks.shape == (2, 40, 50)
    assert masks[0].sum() == 36 and masks[1].sum() == 0
    assert list(results['gt_ignore_flags']) == [False, False]
    assert (ds.skip_counts['with mask'], ds.skip_counts['box only']) == (1, 1)


def test_box_only_file_loads_without_area(tmp_path):
    anns = [box(1, 1, [5, 5, 10, 10])]
    ds = build(make_file(tmp_path, anns), tmp_path)
    assert len(ds) == 1 and osp.basename(ds.get_data_info(0)['img_path']) \
        == '1.png'


@pytest.mark.parametrize('bbox', [[5, 5, -3, 10], [5, 5, 10, -0.5]])
def test_negative_box_size_is_malformed_not_degenerate(tmp_path, bbox):
    path = make_file(tmp_path, [box(1, 1, [2, 2, 10, 10]), box(2, 1, bbox)])
    with pytest.raises(AnnotationFileError) as err:
        build(path, tmp_path)
    msg = str(err.value)
    assert path in msg and 'annotations[1] (id 2).bbox' in msg
    assert 'negative width or height' in msg


def test_non_finite_box_is_malformed(tmp_path):
    path = make_file(tmp_path, [box(1, 1, [2, 2, float('nan'), 10])])
    with pytest.raises(AnnotationFileError, match='4 finite numbers'):
        build(path, tmp_path)


def test_missing_annotation_file_says_how_to_make_it(tmp_path):
    missing = str(tmp_path / 'instances_train_proxy.json')
    hint = 'run bash tools/boxcaseg/toy_pipeline.sh to make it'
    with pytest.raises(FileNotFoundError) as err:
        build(missing, tmp_path, ann_file_hint=hint)
    assert missing in str(err.value) and hint in str(err.value)
    with pytest.raises(FileNotFoundError, match='ann_file of BoxCocoDataset'):
        build(missing, tmp_path)


def test_proxy_config_on_fresh_toy_data_says_what_makes_its_file(tiny_toy):
    from mmengine.config import Config

    from mmboxseg.registry import DATASETS
    from ..conftest import REPO
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py'))
    cfg.train_dataloader.dataset.data_root = tiny_toy + '/'
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(cfg.train_dataloader.dataset)
    assert 'instances_train_proxy.json' in str(err.value)
    assert 'tools/boxcaseg/toy_pipeline.sh' in str(err.value)
