# Copyright (c) mmboxseg contributors. All rights reserved.
"""The BoxInst supervision targets against straightforward references."""
import math

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmboxseg.models.data_preprocessors import BoxSupDataPreprocessor
from mmboxseg.models.utils import (color_similarity, rgb_to_lab,
                                   strided_box_masks, strided_image_masks)


def test_rgb_to_lab_matches_skimage():
    skimage_color = pytest.importorskip('skimage.color')
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(2, 9, 7, 3), dtype=np.uint8)
    # include the extremes and the sRGB linear segment
    rgb[0, 0, 0] = (0, 0, 0)
    rgb[0, 0, 1] = (255, 255, 255)
    rgb[0, 0, 2] = (5, 10, 3)
    got = rgb_to_lab(torch.from_numpy(rgb).permute(0, 3, 1, 2))
    for i in range(2):
        ref = skimage_color.rgb2lab(rgb[i])
        np.testing.assert_allclose(
            got[i].permute(1, 2, 0).numpy(), ref, atol=2e-3)


def test_rgb_to_lab_known_values():
    white = torch.full((1, 3, 1, 1), 255.0)
    lab = rgb_to_lab(white).flatten()
    assert lab[0].item() == pytest.approx(100.0, abs=1e-3)
    assert abs(lab[1].item()) < 1e-2 and abs(lab[2].item()) < 1e-2
    red = torch.tensor([255.0, 0, 0]).view(1, 3, 1, 1)
    # skimage: rgb2lab([1, 0, 0]) = (53.24, 80.09, 67.20)
    np.testing.assert_allclose(
        rgb_to_lab(red).flatten().numpy(), [53.24, 80.09, 67.20], atol=0.02)


def reference_box_mask(box, full_hw, stride):
    """AdelaiDet: fill at full resolution with int() bounds, then sample."""
    full = torch.zeros(full_hw)
    x1, y1, x2, y2 = [float(v) for v in box]
    full[int(y1):int(y2 + 1), int(x1):int(x2 + 1)] = 1
    start = stride // 2
    return full[start::stride, start::stride].bool()


def test_strided_box_masks_match_full_resolution_reference():
    torch.manual_seed(0)
    h, w, stride = 64, 96, 4
    xy1 = torch.rand(30, 2) * torch.tensor([w - 1.0, h - 1.0])
    wh = torch.rand(30, 2) * 40
    boxes = torch.cat([xy1, (xy1 + wh).clamp(max=torch.tensor([w, h]))], 1)
    boxes[0] = torch.tensor([0.0, 0.0, w, h])
    boxes[1] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # exactly one sample
    boxes[2] = torch.tensor([2.5, 6.0, 5.9, 6.99])
    got = strided_box_masks(boxes, (h // stride, w // stride), stride)
    for i, box in enumerate(boxes):
        assert torch.equal(got[i], reference_box_mask(box, (h, w), stride)), i


def test_strided_image_masks_remove_bottom_rows_like_adelaidet():
    # resized 100 rows from an original 50 rows: int(10 * 100 / 50) = 20
    img_shapes = torch.tensor([[100, 60], [80, 64]])
    ori_heights = torch.tensor([50, 80])
    masks = strided_image_masks(img_shapes, ori_heights, (32, 16), 4, 10)
    for i, (h, w) in enumerate(img_shapes.tolist()):
        removed = int(10 * h / ori_heights[i].item())
        full = torch.zeros(128, 64)
        full[:h - removed, :w] = 1
        assert torch.equal(masks[i], full[2::4, 2::4].bool())


def reference_similarity(lab, valid, k, d, theta):
    """Per-pixel loops over an explicit neighbourhood."""
    _, h, w = lab.shape
    r = k // 2
    offsets = [(dy * d, dx * d) for dy in range(-r, r + 1)
               for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
    out = torch.zeros(len(offsets), h, w)
    for o, (dy, dx) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and valid[yy, xx]:
                    dist = torch.linalg.norm(lab[:, y, x] - lab[:, yy, xx])
                    out[o, y, x] = math.exp(-dist.item() / theta)
    return out


def test_color_similarity_matches_loop_reference():
    torch.manual_seed(1)
    lab = torch.randn(2, 3, 6, 7) * 3
    valid = torch.ones(2, 6, 7, dtype=torch.bool)
    valid[0, 4:] = False
    valid[1, :, 5:] = False
    got = color_similarity(lab, valid, kernel_size=3, dilation=2, theta=2.0)
    for i in range(2):
        torch.testing.assert_close(
            got[i], reference_similarity(lab[i], valid[i], 3, 2, 2.0))


def make_batch(sizes, boxes, seed=0):
    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for (h, w), bxs in zip(sizes, boxes):
        img = rng.integers(0, 256, size=(3, h, w), dtype=np.uint8)
        img[:, :h // 2, :w // 2] = 200  # a flat region: similar colours
        inputs.append(torch.from_numpy(img))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h // 2, w // 2), pad_shape=(h,
                                                                         w)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(bxs, dtype=torch.float32).reshape(-1, 4),
            labels=torch.zeros(len(bxs), dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def adelaidet_reference(raw_images, batch_hw, sample, stride, k, d, bottom):
    """AdelaiDet's recipe for one image: raw BGR uint8 zero-padded, pooled,
    truncated, reordered to RGB, skimage rgb2lab, similarity."""
    skimage_color = pytest.importorskip('skimage.color')
    padded = torch.zeros(3, *batch_hw)
    h, w = raw_images.shape[-2:]
    padded[:, :h, :w] = raw_images.float()
    pooled = torch.nn.functional.avg_pool2d(padded[None], stride,
                                            stride)[0].byte()
    rgb = pooled[[2, 1, 0]].permute(1, 2, 0).numpy()
    lab = torch.from_numpy(skimage_color.rgb2lab(rgb)).permute(2, 0, 1).float()
    valid = torch.zeros(batch_hw)
    removed = int(bottom * h / sample.ori_shape[0])
    valid[:h - removed, :w] = 1
    valid = valid[stride // 2::stride, stride // 2::stride].bool()
    return reference_similarity(lab, valid, k, d, 2.0)


def test_preprocessor_matches_adelaidet_reference():
    data = make_batch([(40, 56), (28, 48)],
                      [[[3, 4, 30, 20], [10, 0, 55, 39]], [[0, 0, 47, 27]]])
    raw = [img.clone() for img in data['inputs']]
    pre = BoxSupDataPreprocessor(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=8,
        bottom_pixels_removed=2)
    out = pre(data, training=True)
    assert out['inputs'].shape == (2, 3, 40, 56)
    for i, sample in enumerate(out['data_samples']):
        ref = adelaidet_reference(raw[i], (40, 56), sample, 4, 3, 2, 2)
        sim = sample.color_similarity
        assert sim.shape == (8, 10, 14)
        # binary edge decisions agree; values agree up to LAB rounding
        assert torch.equal(sim >= 0.3, ref >= 0.3)
        torch.testing.assert_close(sim, ref, atol=2e-3, rtol=0)
        for box, mask in zip(sample.gt_instances.bboxes,
                             sample.gt_instances.box_masks):
            assert torch.equal(mask, reference_box_mask(box, (40, 56), 4))


class MasksSentinel:
    """One-instance stand-in for gt masks."""

    def __len__(self):
        return 1


def test_preprocessor_drops_masks_under_box_supervision_only():
    data = make_batch([(32, 32)], [[[1, 1, 20, 20]]])
    data['data_samples'][0].gt_instances.masks = MasksSentinel()
    pre = BoxSupDataPreprocessor(pad_size_divisor=32)
    out = pre(data, training=True)
    assert 'masks' not in out['data_samples'][0].gt_instances
    # mixed supervision keeps (and pads) them
    from mmdet.structures.mask import BitmapMasks
    data = make_batch([(32, 32)], [[[1, 1, 20, 20]]])
    masks = BitmapMasks(np.ones((1, 32, 32), np.uint8), 32, 32)
    data['data_samples'][0].gt_instances.masks = masks
    pre = BoxSupDataPreprocessor(
        pad_size_divisor=32, supervision='mixed', pad_mask=True)
    out = pre(data, training=True)
    kept = out['data_samples'][0].gt_instances.masks
    assert kept.masks.shape == (1, 32, 32) and kept.masks.all()
    out = pre(make_batch([(32, 32)], [[[1, 1, 20, 20]]]), training=False)
    assert 'color_similarity' not in out['data_samples'][0]


def test_preprocessor_rejects_bad_settings():
    with pytest.raises(ValueError, match='pairwise_size'):
        BoxSupDataPreprocessor(pairwise_size=4)
    with pytest.raises(ValueError, match='raw_channel_order'):
        BoxSupDataPreprocessor(raw_channel_order='hsv')
    pre = BoxSupDataPreprocessor(pad_size_divisor=1)
    with pytest.raises(ValueError, match='pad_size_divisor'):
        pre(make_batch([(30, 30)], [[[1, 1, 20, 20]]]), training=True)
