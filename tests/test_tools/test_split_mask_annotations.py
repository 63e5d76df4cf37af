# Copyright (c) mmboxseg contributors. All rights reserved.
import json

import pytest

from ..conftest import load_tool

tool = load_tool('tools/misc/split_mask_annotations.py', 'split_masks_t')


def content():
    cats = [
        dict(id=1, name='person'),
        dict(id=2, name='giraffe'),
        dict(id=3, name='tv')
    ]
    anns = [
        dict(
            id=i,
            image_id=1,
            category_id=c,
            bbox=[0, 0, 2, 2],
            segmentation=[[0, 0, 2, 0, 2, 2]])
        for i, c in enumerate([1, 2, 3, 2], start=1)
    ]
    return dict(images=[dict(id=1)], annotations=anns, categories=cats)


def kept(c):
    return [a['id'] for a in c['annotations'] if 'segmentation' in a]


def test_voc_and_nonvoc_split(tmp_path):
    src = tmp_path / 'in.json'
    src.write_text(json.dumps(content()))
    tool.main([str(src), str(tmp_path / 'voc.json'), '--keep-masks-of', 'voc'])
    voc = json.loads((tmp_path / 'voc.json').read_text())
    assert kept(voc) == [1, 3]  # person and tv are VOC classes
    tool.main(
        [str(src),
         str(tmp_path / 'non.json'), '--keep-masks-of', 'nonvoc'])
    non = json.loads((tmp_path / 'non.json').read_text())
    assert kept(non) == [2, 4]
    # boxes are untouched
    assert [a['bbox'] for a in voc['annotations']] == [[0, 0, 2, 2]] * 4


def test_unknown_category_is_an_error():
    with pytest.raises(ValueError, match='zebra'):
        tool.split_masks(content(), ['zebra'])
