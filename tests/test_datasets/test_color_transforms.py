# Copyright (c) mmboxseg contributors. All rights reserved.
"""The student view's colour transforms: exact values, probabilities,
geometry untouched, bad arguments."""
import cv2
import numpy as np
import pytest

from mmboxseg.datasets.transforms import ColorJitter, GaussianBlur


def image():
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (6, 5, 3)).astype(np.uint8)


def test_each_jitter_operation_by_hand():
    img = image().astype(np.float32)
    gray = img[..., 0] * 0.114 + img[..., 1] * 0.587 + img[..., 2] * 0.299
    got = ColorJitter.apply(image(), [('brightness', 1.5)])
    np.testing.assert_array_equal(got, np.round(np.clip(img * 1.5, 0, 255)))
    got = ColorJitter.apply(image(), [('contrast', 0.5)])
    want = np.round(np.clip(img * 0.5 + 0.5 * gray.mean(), 0, 255))
    np.testing.assert_array_equal(got, want)
    got = ColorJitter.apply(image(), [('saturation', 0.0)])
    np.testing.assert_array_equal(
        got, np.round(np.repeat(gray[..., None], 3, axis=2)))
    # hue +0.5 turn: pure red (BGR 0,0,255) becomes cyan (255,255,0)
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 2] = 255
    assert ColorJitter.apply(red, [('hue', 0.5)]).tolist() == [[[255, 255, 0]]]


def test_jitter_probability_ranges_and_results():
    results = dict(img=image(), gt_bboxes=np.array([[0, 0, 3, 3]]))
    out = ColorJitter(brightness=(2.0, 2.0), prob=1.0)(dict(results))
    np.testing.assert_array_equal(
        out['img'], np.clip(image().astype(np.int32) * 2, 0, 255))
    assert out['gt_bboxes'] is results['gt_bboxes']
    np.testing.assert_array_equal(
        ColorJitter(brightness=0.4, prob=0.0)(dict(results))['img'], image())
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    assert jitter.brightness == (0.6, 1.4) and jitter.hue == (-0.1, 0.1)
    assert ColorJitter(brightness=2.0).brightness == (0.0, 3.0)
    np.random.seed(0)
    changed = sum(not np.array_equal(
        ColorJitter(brightness=0.4, prob=0.8)(dict(results))['img'], image())
                  for _ in range(200))
    assert 140 <= changed <= 180  # about 80 %
    for bad in (dict(brightness=-1), dict(hue=0.6), dict(prob=2),
                dict(contrast=(1.5, 0.5))):
        with pytest.raises(ValueError):
            ColorJitter(**bad)


def test_gaussian_blur():
    img = image()
    out = GaussianBlur(
        kernel_size=3, sigma=(1.0, 1.0), prob=1.0)(
            dict(img=img))
    np.testing.assert_array_equal(
        out['img'], cv2.GaussianBlur(img, (3, 3), sigmaX=1.0, sigmaY=1.0))
    assert out['img'].shape == img.shape
    same = GaussianBlur(prob=0.0)(dict(img=img))
    np.testing.assert_array_equal(same['img'], img)
    for bad in (dict(kernel_size=4), dict(sigma=(2.0, 1.0)), dict(prob=-1)):
        with pytest.raises(ValueError):
            GaussianBlur(**bad)
