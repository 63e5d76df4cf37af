"""Generate toy image pairs with known dense correspondences, in
PF-PASCAL's CSV format (read by ``PFPascalPairDataset``).

Each pair shows one object of the toy data set's classes (same shape
families, textures and backgrounds as ``make_toy_dataset.py``): the source
image holds the object at a random place; the target image holds the
*same* object (shape and texture) warped by a random similarity transform
(rotation within +-``--max-rotation`` degrees, scale 0.8-1.25) on a new
background. ``--num-keypoints`` points are sampled inside the source
object and mapped through the transform, so the ground-truth
correspondences are exact (up to the target's nearest-pixel sampling).

Layout written under ``--out`` (default ``data/toy_pairs``)::

    images/000000_a.png, images/000000_b.png, ...
    pairs.csv   # source_image,target_image,class,XA,YA,XB,YB,bboxA,bboxB
    meta.json

Example::

    python tools/misc/make_toy_correspondence_pairs.py --out data/toy_pairs
"""
import argparse
import csv
import importlib.util
import json
import os
import os.path as osp

import numpy as np

FORMAT_VERSION = 1
MIN_SIDE = 32  # smallest object side, so that 7x7 RoI grids are meaningful


def _toy_module():
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'make_toy_dataset.py')
    spec = importlib.util.spec_from_file_location('make_toy_dataset', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def similarity(angle, scale, centre_src, centre_trg):
    """``x_t = s R (x_s - c_s) + c_t`` as a function and its inverse."""
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])

    def forward(points):
        return (points - centre_src) @ rot.T * scale + centre_trg

    def inverse(points):
        return (points - centre_trg) @ rot / scale + centre_src

    return forward, inverse


def make_pair(toy, rng, img_size, num_keypoints, max_rotation):
    """One pair: ``(img_a, img_b, label, kps_a, kps_b, box_a, box_b)``."""
    label = int(rng.integers(len(toy.CATEGORIES)))
    max_size = toy.MAX_OBJ_SIZE_FRAC * img_size
    for _ in range(100):
        shape = toy.sample_shape(rng, label, max_size)
        if min(shape.shape) >= MIN_SIDE * 0.75 and max(
                shape.shape) >= MIN_SIDE:
            break
    sh, sw = shape.shape
    y0 = int(rng.integers(0, img_size - sh + 1))
    x0 = int(rng.integers(0, img_size - sw + 1))
    mask_a = np.zeros((img_size, img_size), bool)
    mask_a[y0:y0 + sh, x0:x0 + sw] = shape
    base = rng.uniform(20, 235, size=3)
    texture = toy.make_object_texture(rng, img_size, base)
    bg_a = toy.make_background(rng, img_size)
    img_a = np.where(mask_a[..., None], texture, bg_a)

    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    centre_a = np.array([x0 + sw / 2.0, y0 + sh / 2.0])
    # keep the warped object inside the target image
    corners = np.array(
        [[x0, y0], [x0 + sw, y0], [x0, y0 + sh], [x0 + sw, y0 + sh]], float)
    fwd0, _ = similarity(angle, scale, centre_a, np.zeros(2))
    warped = fwd0(corners)
    lo, hi = -warped.min(0), img_size - warped.max(0)
    centre_b = rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
    forward, inverse = similarity(angle, scale, centre_a, centre_b)

    ys, xs = np.mgrid[0:img_size, 0:img_size]
    grid_b = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    src = np.floor(inverse(grid_b)).astype(int)
    inside = ((src >= 0) & (src < img_size)).all(axis=1)
    src = np.clip(src, 0, img_size - 1)
    mask_b = (mask_a[src[:, 1], src[:, 0]] & inside).reshape(
        img_size, img_size)
    tex_b = texture[src[:, 1], src[:, 0]].reshape(img_size, img_size, 3)
    bg_b = toy.make_background(rng, img_size)
    img_b = np.where(mask_b[..., None], tex_b, bg_b)

    # keypoints: source pixels whose mapped position lands on the object
    cand_y, cand_x = np.nonzero(mask_a)
    order = rng.permutation(len(cand_x))
    kps_a, kps_b = [], []
    for i in order:
        pa = np.array([cand_x[i] + 0.5, cand_y[i] + 0.5])
        pb = forward(pa[None])[0]
        xb, yb = int(np.floor(pb[0])), int(np.floor(pb[1]))
        if 0 <= xb < img_size and 0 <= yb < img_size and mask_b[yb, xb]:
            kps_a.append(pa)
            kps_b.append(pb)
        if len(kps_a) == num_keypoints:
            break
    to_uint8 = (lambda im: np.clip(np.rint(im), 0, 255).astype(np.uint8))
    return (to_uint8(img_a), to_uint8(img_b), label, np.array(kps_a),
            np.array(kps_b), toy.mask_box(mask_a), toy.mask_box(mask_b))


def _join(values):
    return ';'.join(f'{v:.2f}' for v in values)


def generate(out_dir,
             num_pairs=100,
             img_size=128,
             num_keypoints=10,
             max_rotation=20.0,
             seed=0):
    """Write ``num_pairs`` pairs under ``out_dir``; returns the CSV path."""
    toy = _toy_module()
    meta = dict(
        format_version=FORMAT_VERSION,
        num_pairs=int(num_pairs),
        img_size=int(img_size),
        num_keypoints=int(num_keypoints),
        max_rotation=float(max_rotation),
        seed=int(seed))
    csv_path = osp.join(out_dir, 'pairs.csv')
    meta_path = osp.join(out_dir, 'meta.json')
    if osp.isfile(meta_path) and osp.isfile(csv_path):
        with open(meta_path) as f:
            if json.load(f) == meta:
                print(f'{out_dir}: already complete')
                return csv_path
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    rows = []
    for index in range(num_pairs):
        rng = np.random.default_rng(
            np.random.SeedSequence(int(seed), spawn_key=(index, )))
        img_a, img_b, label, kps_a, kps_b, box_a, box_b = make_pair(
            toy, rng, img_size, num_keypoints, max_rotation)
        names = [f'{index:06d}_a.png', f'{index:06d}_b.png']
        for name, img in zip(names, (img_a, img_b)):
            with open(osp.join(out_dir, 'images', name), 'wb') as f:
                f.write(toy.encode_png(img))
        rows.append(
            dict(
                source_image=names[0],
                target_image=names[1],
                # 1-based, as PF-PASCAL
                **{'class': label + 1},
                XA=_join(kps_a[:, 0]),
                YA=_join(kps_a[:, 1]),
                XB=_join(kps_b[:, 0]),
                YB=_join(kps_b[:, 1]),
                # mask_box gives inclusive pixel indices
                bboxA=_join([box_a[0], box_a[1], box_a[2] + 1, box_a[3] + 1]),
                bboxB=_join([box_b[0], box_b[1], box_b[2] + 1, box_b[3] + 1])))
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'wrote {num_pairs} pairs to {out_dir}')
    return csv_path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/toy_pairs')
    parser.add_argument('--num-pairs', type=int, default=100)
    parser.add_argument('--img-size', type=int, default=128)
    parser.add_argument('--num-keypoints', type=int, default=10)
    parser.add_argument('--max-rotation', type=float, default=20.0)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


if __name__ == '__main__':
    args = parse_args()
    generate(args.out, args.num_pairs, args.img_size, args.num_keypoints,
             args.max_rotation, args.seed)
