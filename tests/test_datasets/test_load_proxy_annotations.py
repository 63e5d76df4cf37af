# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg proxy files: the agreement travels from the annotation file to
``gt_instances.agreement`` with its instance, or a clear error."""
import json

import numpy as np
import pytest
import torch

from mmboxseg.datasets import AnnotationFileError, BoxCocoDataset
from mmboxseg.datasets.transforms import (LoadProxyAnnotations,
                                          PackProxyDetInputs)
from mmboxseg.utils import register_all_modules

register_all_modules()

H, W = 40, 50


def rle(y0, y1, x0, x1):
    from pycocotools import mask as mask_utils
    m = np.zeros((H, W), np.uint8, order='F')
    m[y0:y1, x0:x1] = 1
    enc = mask_utils.encode(m)
    enc['counts'] = enc['counts'].decode()
    return enc


def ann(i, img, bbox, agreement=None, cat=1, **kw):
    x, y, w, h = bbox
    a = dict(
        id=i,
        image_id=img,
        category_id=cat,
        bbox=bbox,
        segmentation=rle(int(y), int(y + h), int(x), int(x + w)),
        **kw)
    if agreement is not None:
        a['proxy_box_agreement'] = agreement
    return a


def write_file(tmp_path, anns, name='proxy.json'):
    import cv2
    img_dir = tmp_path / 'img'
    img_dir.mkdir(exist_ok=True)
    images = [
        dict(id=1, file_name='1.png', width=W, height=H),
        dict(id=2, file_name='2.png', width=W, height=H)
    ]
    for img in images:
        cv2.imwrite(
            str(img_dir / img['file_name']), np.full((H, W, 3), 90, np.uint8))
    path = tmp_path / name
    path.write_text(
        json.dumps(
            dict(
                images=images,
                annotations=anns,
                categories=[dict(id=1, name='a'),
                            dict(id=2, name='b')])))
    return str(path)


def dataset(path, tmp_path, pipeline, fields=('proxy_box_agreement', )):
    return BoxCocoDataset(
        ann_file=path,
        data_prefix=dict(img=str(tmp_path / 'img') + '/'),
        metainfo=dict(classes=('a', 'b')),
        extra_instance_fields=list(fields),
        pipeline=pipeline)


# image 1: agreements deliberately not sorted; a crowd box; a degenerate box
# (skipped by the data set, so it needs no agreement)
ANNS = [
    ann(11, 1, [2, 2, 10, 8], 0.97),
    ann(12, 1, [20, 5, 12, 20], 0.31, cat=2),
    ann(13, 1, [5, 25, 30, 10], 0.66, iscrowd=1),
    ann(14, 1, [30, 30, 0.5, 5]),
    ann(15, 1, [36, 2, 12, 12], 0.955),
    ann(21, 2, [1, 1, 20, 20], 0.5),
]
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProxyAnnotations'),
    dict(type='Resize', scale=(100, 80), keep_ratio=True),
    dict(type='RandomFlip', prob=1.0),
    dict(type='PackProxyDetInputs')
]


def test_dataset_copies_extra_fields(tmp_path):
    ds = dataset(write_file(tmp_path, ANNS), tmp_path, [])
    inst = ds.get_data_info(0)['instances']
    assert [i['proxy_box_agreement']
            for i in inst] == [0.97, 0.31, 0.66, 0.955]
    assert [i['ignore_flag'] for i in inst] == [0, 0, 1, 0]
    # without the argument nothing is copied
    plain = dataset(write_file(tmp_path, ANNS), tmp_path, [], fields=())
    assert 'proxy_box_agreement' not in plain.get_data_info(0)['instances'][0]


def test_agreement_packed_with_its_instance(tmp_path):
    ds = dataset(write_file(tmp_path, ANNS), tmp_path, PIPELINE)
    sample = ds[0]['data_samples']
    gt, ignored = sample.gt_instances, sample.ignored_instances
    assert gt.agreement.dtype == torch.float32
    torch.testing.assert_close(gt.agreement, torch.tensor([0.97, 0.31, 0.955]))
    torch.testing.assert_close(ignored.agreement, torch.tensor([0.66]))
    # each value is still next to its own box after resize (x2) and flip
    # (x -> 100 - x): annotation [x, y, w, h] -> [100-2x-2w, 2y, 100-2x, ..]
    x1 = {0.97: 100 - 2 * 12, 0.31: 100 - 2 * 32, 0.955: 100 - 2 * 48}
    for a, box in zip(gt.agreement.tolist(), gt.bboxes.tensor.tolist()):
        assert box[0] == pytest.approx(x1[round(a, 3)])
    assert gt.labels.tolist() == [0, 1, 0]
    assert len(gt.masks) == 3
    assert ds[1]['data_samples'].gt_instances.agreement.tolist() == [0.5]


def test_missing_field_in_file_names_file_annotation_and_field(tmp_path):
    anns = [dict(a) for a in ANNS]
    del anns[4]['proxy_box_agreement']
    path = write_file(tmp_path, anns, name='no_agreement.json')
    with pytest.raises(AnnotationFileError) as err:
        dataset(path, tmp_path, PIPELINE)
    msg = str(err.value)
    assert 'no_agreement.json' in msg
    assert 'annotations[4] (id 15).proxy_box_agreement' in msg


def test_missing_key_at_transform_time_names_image_key_and_tool(tmp_path):
    ds = dataset(write_file(tmp_path, ANNS), tmp_path, PIPELINE, fields=())
    with pytest.raises(KeyError) as err:
        ds[0]
    msg = str(err.value)
    assert '1.png' in msg and '`proxy_box_agreement`' in msg
    assert 'tools/boxcaseg/generate_proxy_masks.py' in msg
    assert 'extra_instance_fields' in msg
    # a custom key is read (and named) as configured
    results = dict(
        img_path='x.png',
        ori_shape=(H, W),
        instances=[
            dict(
                bbox=[0, 0, 4, 4],
                bbox_label=0,
                ignore_flag=0,
                mask=rle(0, 4, 0, 4),
                conf=0.25)
        ])
    out = LoadProxyAnnotations(agreement_key='conf')(dict(results))
    assert out['gt_mask_agreement'].tolist() == [0.25]
    with pytest.raises(KeyError, match="x.png has no `proxy_box"):
        LoadProxyAnnotations()(dict(results))


def test_instance_dropping_transform_is_an_error(tmp_path):
    # mmdet's FilterAnnotations drops the 10x8 box but knows nothing of
    # gt_mask_agreement: packing must refuse instead of misaligning
    pipeline = PIPELINE[:2] + [
        dict(type='FilterAnnotations', min_gt_bbox_wh=(9, 9))
    ] + PIPELINE[2:]
    ds = dataset(write_file(tmp_path, ANNS), tmp_path, pipeline)
    with pytest.raises(
            ValueError, match='3 gt_bboxes but 4 gt_mask_agreement'):
        ds[0]
    pack = PackProxyDetInputs()
    assert pack.mapping_table['gt_mask_agreement'] == 'agreement'
    assert pack.mapping_table['gt_bboxes'] == 'bboxes'
