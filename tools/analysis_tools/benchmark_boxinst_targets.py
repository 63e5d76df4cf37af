# Copyright (c) mmboxseg contributors. All rights reserved.
"""Benchmark building the BoxInst supervision (colour similarity + box
masks): mmboxseg's BoxSupDataPreprocessor against mmdet 3.3.0's
BoxInstDataPreprocessor, on the same batch.

    python tools/analysis_tools/benchmark_boxinst_targets.py \
        [--num-images 2] [--height 800] [--width 1333] [--num-boxes 20] \
        [--repeat 5] [--device cpu]

Prints one JSON line: mmboxseg_ms and mmdet_ms (median wall time of one
training-mode forward of each preprocessor), speedup, pairwise_agreement
(fraction of identical binary edge decisions ``S >= 0.3`` over all valid
pixels and the 8 neighbours) and box_masks_equal (mmboxseg's stride-4 box
masks against mmdet's full-resolution masks sampled at [2::4]).  mmdet's
preprocessor needs scikit-image (requirements/optional.txt).
"""
import argparse
import copy
import json
import statistics
import time

import numpy as np
import torch


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-images', type=int, default=2)
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1333)
    parser.add_argument('--num-boxes', type=int, default=20)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threshold', type=float, default=0.3)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def make_image(rng, h, w):
    """Smooth colour gradients, flat blocks and sensor noise (uint8, BGR,
    [3, H, W]): a realistic mix of similar and dissimilar neighbours."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        127 + 80 * np.sin(xs / rng.uniform(40, 200) + c) *
        np.cos(ys / rng.uniform(40, 200) - c) for c in range(3)
    ])
    for _ in range(30):
        y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
        bh, bw = rng.integers(20, h // 3), rng.integers(20, w // 3)
        img[:, y0:y0 + bh, x0:x0 + bw] = rng.uniform(0, 255, (3, 1, 1))
    img += rng.normal(0, 4, img.shape)
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8))


def make_batch(args):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(args.seed)
    inputs, samples = [], []
    for _ in range(args.num_images):
        h, w = args.height, args.width
        inputs.append(make_image(rng, h, w))
        xy = rng.uniform(0, [w - 16, h - 16], (args.num_boxes, 2))
        wh = rng.uniform(16, [w / 2, h / 2], (args.num_boxes, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_instances = InstanceData(
            bboxes=torch.from_numpy(boxes).float(),
            labels=torch.zeros(args.num_boxes, dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def timed(fn, data, repeat):
    fn(copy.deepcopy(data))  # warm-up
    times, out = [], None
    for _ in range(repeat):
        batch = copy.deepcopy(data)
        start = time.perf_counter()
        out = fn(batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def main():
    args = parse_args()
    from mmdet.models.data_preprocessors import BoxInstDataPreprocessor

    from mmboxseg.models.data_preprocessors import BoxSupDataPreprocessor
    common = dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32)
    ours = BoxSupDataPreprocessor(
        **common,
        mask_stride=4,
        pairwise_size=3,
        pairwise_dilation=2,
        bottom_pixels_removed=10).to(args.device)
    theirs = BoxInstDataPreprocessor(
        **common,
        mask_stride=4,
        pairwise_size=3,
        pairwise_dilation=2,
        pairwise_color_thresh=args.threshold,
        bottom_pixels_removed=10).to(args.device)
    data = make_batch(args)

    ours_ms, ours_out = timed(lambda d: ours(d, training=True), data,
                              args.repeat)
    theirs_ms, theirs_out = timed(lambda d: theirs(d, training=True), data,
                                  args.repeat)

    agree, total, masks_equal = 0, 0, True
    for a, b in zip(ours_out['data_samples'], theirs_out['data_samples']):
        ours_edges = (a.color_similarity >= args.threshold).cpu()
        their_edges = b.gt_instances.pairwise_masks[0].bool().cpu()
        # compare where an edge exists in either (both zero elsewhere:
        # padding and removed rows)
        agree += (ours_edges == their_edges).sum().item()
        total += ours_edges.numel()
        their_masks = torch.from_numpy(
            b.gt_instances.masks.masks[:, 2::4, 2::4]).bool()
        masks_equal &= torch.equal(a.gt_instances.box_masks.cpu(), their_masks)
    print(
        json.dumps(
            dict(
                mmboxseg_ms=round(ours_ms, 1),
                mmdet_ms=round(theirs_ms, 1),
                speedup=round(theirs_ms / ours_ms, 2),
                pairwise_agreement=round(agree / total, 6),
                box_masks_equal=bool(masks_equal),
                images=args.num_images,
                size=[args.height, args.width],
                boxes_per_image=args.num_boxes,
                device=args.device,
                torch_threads=torch.get_num_threads())))


if __name__ == '__main__':
    main()
