# Copyright (c) mmboxseg contributors. All rights reserved.
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
from mmcv.transforms import Compose

import mmboxseg.datasets.salient_dataset as salient_module
from mmboxseg.datasets import LoadSalientMask, SalientDataset
from mmboxseg.registry import DATASETS, TRANSFORMS
from mmboxseg.utils import register_all_modules
from ..conftest import load_tool

register_all_modules()

toy = load_tool('tools/misc/make_toy_dataset.py', 'make_toy_dataset_sal')

IMG_DIR, MASK_DIR = 'DUTS-TR-Image', 'DUTS-TR-Mask'


def disc(mask, cy, cx, r, value=255):
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    mask[(yy - cy)**2 + (xx - cx)**2 <= r * r] = value
    return mask


def write_pair(root, stem, mask, img_ext='.png', img=True, msk=True):
    """Write ``<stem><img_ext>`` (the mask as a BGR image) and/or the mask
    ``<stem>.png`` under the DUTS-TR folders of ``root``."""
    os.makedirs(osp.join(root, IMG_DIR), exist_ok=True)
    os.makedirs(osp.join(root, MASK_DIR), exist_ok=True)
    if img:
        cv2.imwrite(
            osp.join(root, IMG_DIR, stem + img_ext),
            cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR))
    if msk:
        cv2.imwrite(osp.join(root, MASK_DIR, stem + '.png'), mask)


@pytest.fixture
def masks_root(tmp_path):
    """Five hand-built masks of 48 x 56 px:

    * ``one``: one disc (.jpg image);
    * ``two``: two separate discs (.bmp image);
    * ``speck``: a disc of ~450 px plus a 3-pixel speck (< 1% of the
      foreground);
    * ``grey``: a disc plus a second disc at value 100, below mask_thr;
    * ``empty``: all zero.
    """
    root = str(tmp_path / 'sal')
    blank = np.zeros((48, 56), np.uint8)
    write_pair(root, 'one', disc(blank.copy(), 24, 28, 12), '.jpg')
    two = disc(disc(blank.copy(), 14, 14, 8), 34, 42, 8)
    write_pair(root, 'two', two, '.bmp')
    speck = disc(blank.copy(), 24, 20, 12)
    speck[44, 50:53] = 255
    write_pair(root, 'speck', speck)
    write_pair(root, 'grey',
               disc(disc(blank.copy(), 24, 16, 10), 24, 44, 8, 100))
    write_pair(root, 'empty', blank)
    return root


@pytest.fixture
def log(monkeypatch):
    lines = []
    monkeypatch.setattr(
        salient_module,
        'print_log',
        lambda msg, logger=None: lines.append(msg))
    return lines


def stems(dataset):
    return [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))]


def test_single_object_filter(masks_root, log):
    ds = DATASETS.build(dict(type='SalientDataset', data_root=masks_root))
    assert isinstance(ds, SalientDataset)
    # 'two' has two objects, 'empty' none; the speck (3 px < 1% of 455 px)
    # and the sub-threshold grey disc are no objects
    assert stems(ds) == ['grey', 'one', 'speck']
    assert len(log) == 1
    assert 'found 5' in log[0] and 'kept 3' in log[0]
    assert 'dropped 1 as multi-object and 1 as empty' in log[0]
    info = ds.get_data_info(1)
    assert info['img_path'] == osp.join(masks_root, IMG_DIR, 'one.jpg')
    assert info['seg_map_path'] == osp.join(masks_root, MASK_DIR, 'one.png')
    assert info['source'] == 'salient'
    assert ds.metainfo['classes'] == ('salient object', )
    assert ds.get_cat_ids(0) == [0]

    # the speck counts once the size threshold is off; the grey disc counts
    # once the binarisation threshold is below its value
    strict = SalientDataset(masks_root, min_component_frac=0.0)
    assert stems(strict) == ['grey', 'one']
    low_thr = SalientDataset(masks_root, mask_thr=100)
    assert stems(low_thr) == ['one', 'speck']
    everything = SalientDataset(masks_root, single_object=False)
    assert stems(everything) == ['empty', 'grey', 'one', 'speck', 'two']
    assert 'single_object=False' in log[-1]


def test_bad_arguments(masks_root):
    with pytest.raises(ValueError, match='min_component_frac'):
        SalientDataset(masks_root, min_component_frac=1.0)
    with pytest.raises(ValueError, match='mask_thr'):
        SalientDataset(masks_root, mask_thr=0)


def test_stem_list(masks_root, log):
    list_file = osp.join(masks_root, 'single.txt')
    with open(list_file, 'w') as f:
        f.write('speck\n\none.jpg\ntwo\n')
    # listed order; the filter still applies to listed stems
    ds = SalientDataset(masks_root, ann_file='single.txt')
    assert stems(ds) == ['speck', 'one']
    ds = SalientDataset(masks_root, ann_file='single.txt', single_object=False)
    assert stems(ds) == ['speck', 'one', 'two']

    # unlisted orphans do not matter in list mode ...
    write_pair(masks_root, 'no_mask', np.zeros((8, 8), np.uint8), msk=False)
    assert stems(SalientDataset(masks_root,
                                ann_file=list_file)) == ['speck', 'one']
    # ... listed ones do, named with the list's file and line
    with open(list_file, 'w') as f:
        f.write('one\n\nghost\n')
    with pytest.raises(FileNotFoundError) as err:
        SalientDataset(masks_root, ann_file='single.txt')
    msg = str(err.value)
    assert list_file in msg and 'line 3' in msg
    assert osp.join(masks_root, IMG_DIR, 'ghost.(jpg|jpeg|png|bmp)') in msg
    with open(list_file, 'w') as f:
        f.write('one\nno_mask\n')
    with pytest.raises(FileNotFoundError) as err:
        SalientDataset(masks_root, ann_file='single.txt')
    msg = str(err.value)
    assert list_file in msg and 'line 2' in msg
    assert osp.join(masks_root, MASK_DIR, 'no_mask.png') in msg
    with open(list_file, 'w') as f:
        f.write('one\nspeck\none\n')
    with pytest.raises(ValueError, match='lines 1 and 3'):
        SalientDataset(masks_root, ann_file='single.txt')
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        SalientDataset(masks_root, ann_file='missing.txt')


def test_unpaired_files_and_missing_folders(masks_root, tmp_path, log):
    img_dir = osp.join(masks_root, IMG_DIR)
    mask_dir = osp.join(masks_root, MASK_DIR)
    write_pair(masks_root, 'lonely', np.zeros((8, 8), np.uint8), msk=False)
    with pytest.raises(FileNotFoundError) as err:
        SalientDataset(masks_root)
    msg = str(err.value)
    assert 'lonely' in msg
    assert msg.index(img_dir) < msg.index(mask_dir)  # has image, no mask
    os.remove(osp.join(img_dir, 'lonely.png'))
    write_pair(masks_root, 'orphan', np.zeros((8, 8), np.uint8), img=False)
    with pytest.raises(FileNotFoundError) as err:
        SalientDataset(masks_root)
    msg = str(err.value)
    assert 'orphan' in msg
    assert msg.index(mask_dir) < msg.index(img_dir)  # has mask, no image

    with pytest.raises(
            FileNotFoundError, match=re.escape(osp.join(masks_root, 'Masks'))):
        SalientDataset(masks_root, mask_dir='Masks')
    empty_root = str(tmp_path / 'empty')
    os.makedirs(osp.join(empty_root, IMG_DIR))
    os.makedirs(osp.join(empty_root, MASK_DIR))
    with pytest.raises(
            ValueError,
            match='found no image/mask pair in ' + re.escape(empty_root)):
        SalientDataset(empty_root)
    # everything filtered out is an error too
    write_pair(empty_root, 'two',
               disc(disc(np.zeros((32, 32), np.uint8), 6, 6, 4), 24, 24, 4))
    with pytest.raises(ValueError, match='no image has a single-object'):
        SalientDataset(empty_root)


def test_load_salient_mask(tmp_path):
    mask = np.zeros((6, 10), np.uint8)
    mask[1, 1:5] = (127, 128, 200, 255)
    mask[4, 8] = 1
    path = str(tmp_path / 'm.png')
    cv2.imwrite(path, mask)
    transform = TRANSFORMS.build(dict(type='LoadSalientMask'))
    assert isinstance(transform, LoadSalientMask)
    results = transform(
        dict(seg_map_path=path, img_shape=(6, 10), img_path='i.png'))
    out = results['gt_seg_map']
    assert out.dtype == np.uint8 and out.shape == (6, 10)
    expected = np.zeros((6, 10), np.uint8)
    expected[1, 2:5] = 1
    np.testing.assert_array_equal(out, expected)
    assert results['seg_fields'] == ['gt_seg_map']
    # an existing list is extended, without duplicates
    results = transform(
        dict(seg_map_path=path, img_shape=(6, 10), seg_fields=['other']))
    assert results['seg_fields'] == ['other', 'gt_seg_map']
    assert transform(results)['seg_fields'] == ['other', 'gt_seg_map']
    out = LoadSalientMask(thr=1)(dict(seg_map_path=path))['gt_seg_map']
    assert out.sum() == 5
    # thr=None (the BoxCaseg configs, as the release) keeps the raw values
    out = LoadSalientMask(thr=None)(dict(seg_map_path=path))['gt_seg_map']
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)

    with pytest.raises(ValueError) as err:
        transform(dict(seg_map_path=path, img_shape=(10, 6), img_path='i.png'))
    msg = str(err.value)
    assert path in msg and 'i.png' in msg
    assert '6x10' in msg and '10x6' in msg
    with pytest.raises(ValueError, match='thr'):
        LoadSalientMask(thr=256)


def test_pipeline_keeps_mask_aligned(tmp_path):
    # a vertically asymmetric object on a 40 x 40 design grid, its rows
    # doubled into an 80 x 40 image: resizing to 40 x 40 then halves the
    # rows exactly (bilinear for the image, nearest for the mask), so any
    # misalignment of mask and image shows up as a pixel difference
    design = np.zeros((40, 40), bool)
    design[4:15, 6:31] = True
    design[15:36, 6:12] = True
    design[30:36, 12:24] = True  # a foot: still one object
    mask = np.repeat(design, 2, axis=0).astype(np.uint8) * 255
    img = np.where(mask[..., None] > 0, np.uint8([200, 220, 240]),
                   np.uint8([30, 60, 90]))
    root = str(tmp_path / 'sal')
    write_pair(root, 'obj', mask)
    cv2.imwrite(osp.join(root, IMG_DIR, 'obj.png'), img)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadSalientMask'),
        dict(type='Resize', scale=(40, 40), keep_ratio=False),
        dict(type='RandomFlip', prob=1.0, direction='vertical'),
        dict(type='RandomCrop', crop_size=(32, 32)),
    ]
    ds = SalientDataset(root, pipeline=pipeline)
    pack = Compose([TRANSFORMS.build(dict(type='PackDetInputs'))])
    np.random.seed(0)
    offsets = set()
    for _ in range(8):
        results = ds[0]
        crop, seg = results['img'], results['gt_seg_map']
        assert crop.shape == (32, 32, 3) and seg.shape == (32, 32)
        assert results['flip'] and results['flip_direction'] == 'vertical'
        assert 0 < seg.sum() < seg.size
        np.testing.assert_array_equal(seg, crop[..., 0] > 127)
        offsets.add(tuple(results['homography_matrix'][:2, 2]))
        packed = pack(results)
        sem_seg = packed['data_samples'].gt_sem_seg.sem_seg
        assert tuple(sem_seg.shape) == (1, 32, 32)
        np.testing.assert_array_equal(sem_seg[0].numpy(),
                                      packed['inputs'][0].numpy() > 127)
    assert len(offsets) > 1  # several crop positions were checked
    # the check is not vacuous: the unflipped mask would not match
    assert not np.array_equal(design, design[::-1])


def run_salient(out, num, seed=2, extra=()):
    return toy.main([
        '--salient', '--out', out, '--num-salient',
        str(num), '--seed',
        str(seed), '--img-size', '64', *extra
    ])


def test_salient_generator(tmp_path, capsys):
    out = str(tmp_path / 'toy_salient')
    assert run_salient(out, 20) == 0
    assert '20 images, 2 with two objects' in capsys.readouterr().out
    names = [f'{i:06d}.png' for i in range(20)]
    assert sorted(os.listdir(osp.join(out, IMG_DIR))) == names
    assert sorted(os.listdir(osp.join(out, MASK_DIR))) == names
    assert osp.isfile(osp.join(out, 'meta.json'))
    with open(osp.join(out, 'README.txt')) as f:
        assert 'TWO separate' in f.read()

    expected_multi = {toy.salient_multi_index(2, block) for block in (0, 1)}
    multi = set()
    for i, name in enumerate(names):
        img = cv2.imread(osp.join(out, IMG_DIR, name), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 3) and img.std() > 5
        path = osp.join(out, MASK_DIR, name)
        with open(path, 'rb') as f:
            assert f.read(26)[25] == 0  # IHDR colour type 0: grayscale
        mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        num, _, stats, _ = cv2.connectedComponentsWithStats(
            (mask > 0).astype(np.uint8), connectivity=8)
        if num - 1 == 2:
            multi.add(i)
        else:
            assert num - 1 == 1
            # one large, roughly centred object
            x, y, w, h = stats[1, :4]
            assert 0.35 * 64 <= max(w, h) <= 0.85 * 64
            assert abs(x + w / 2 - 32) <= 0.1 * 64 + 1
            assert abs(y + h / 2 - 32) <= 0.1 * 64 + 1
    assert multi == expected_multi and len(multi) == 2

    ds = SalientDataset(out)
    assert set(
        stems(ds)) == {f'{i:06d}'
                       for i in range(20)} - {f'{i:06d}'
                                              for i in multi}
    assert len(SalientDataset(out, single_object=False)) == 20

    # a second run is a no-op
    mtimes = {
        n: os.stat(osp.join(out, MASK_DIR, n)).st_mtime_ns
        for n in names
    }
    first = {n: open(osp.join(out, IMG_DIR, n), 'rb').read() for n in names}
    run_salient(out, 20)
    assert 'already present' in capsys.readouterr().out
    assert mtimes == {
        n: os.stat(osp.join(out, MASK_DIR, n)).st_mtime_ns
        for n in names
    }
    # a smaller set: stale files go, the rest is byte-identical (image i only
    # depends on the seed and i)
    run_salient(out, 10)
    assert sorted(os.listdir(osp.join(out, IMG_DIR))) == names[:10]
    assert sorted(os.listdir(osp.join(out, MASK_DIR))) == names[:10]
    for n in names[:10]:
        assert open(osp.join(out, IMG_DIR, n), 'rb').read() == first[n]
    other = str(tmp_path / 'other_seed')
    run_salient(other, 2, seed=3)
    assert open(osp.join(other, IMG_DIR, names[0]),
                'rb').read() != first[names[0]]


def test_salient_mode_leaves_default_mode_alone(tmp_path):
    # the COCO splits keep their random streams (spawn keys 0, 1, 2) ...
    assert toy.SPLITS == ('train', 'val', 'test')
    for key, split in enumerate(toy.SPLITS):
        expected = np.random.default_rng(
            np.random.SeedSequence(7, spawn_key=(key, 3))).random(4)
        np.testing.assert_array_equal(
            toy.image_rng(7, split, 3).random(4), expected)
    # ... the salient ones are new
    draws = {
        name: toy.image_rng(7, name, 3).random()
        for name in toy.RNG_STREAMS
    }
    assert len(set(draws.values())) == len(toy.RNG_STREAMS)
    # and the default mode writes no salient folders
    out = str(tmp_path / 'toy')
    toy.generate(out, seed=0, num_train=1, num_val=1, num_test=1, img_size=32)
    assert sorted(os.listdir(out)) == [
        'README.txt', 'annotations', 'images', 'meta.json'
    ]
    # RGB images still decode to what was encoded
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)
    png = toy.encode_png(rgb)
    assert png[25] == 2
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[..., ::-1], rgb)
    gray = rgb[..., 0]
    decoded = cv2.imdecode(
        np.frombuffer(toy.encode_png(gray), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, gray)
