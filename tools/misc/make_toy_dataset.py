"""Generate a small synthetic COCO dataset for box-supervised segmentation.

The dataset is designed to be a fair (not trivially easy) test of
instance segmentation learned from bounding boxes only:

* four classes, one non-convex shape family each (``ring``, ``crescent``,
  ``star``, ``ell``) whose masks cover 30-70% of their tight box;
* textured objects on textured backgrounds, with ~15% of the instances
  coloured close to the local background;
* overlapping instances of the same class (later instances occlude
  earlier ones; stored masks and boxes describe the *visible* part);
* object sizes from ~12 px to 60% of the image side, 1-5 objects per
  image and ~3% of the training images without any object.

Layout written under ``--out`` (default ``data/toy``)::

    images/{train,val,test}/000000.png ...
    annotations/instances_train.json   # boxes only (no 'segmentation')
    annotations/instances_val.json     # boxes + RLE masks
    annotations/instances_test.json    # boxes + RLE masks
    meta.json                          # generation arguments
    README.txt

``file_name`` entries are relative to ``images/<split>/``, i.e. use e.g.
``data_prefix=dict(img='images/train/')`` together with
``ann_file='annotations/instances_train.json'`` in a config.

The output is fully determined by ``--seed``: every image draws from its
own generator derived from ``(seed, split, index)``, so changing the size
of one split does not change the content of the others.

Example::

    python tools/misc/make_toy_dataset.py --out data/toy --seed 0

Salient mode (``--salient``) instead writes a DUTS-TR style salient-object
dataset for training class-agnostic segmentation jointly with box crops
(BoxCaseg)::

    python tools/misc/make_toy_dataset.py --salient --out data/toy_salient \
        --num-salient 300 --seed 0 [--img-size 128]

    DUTS-TR-Image/000000.png ...   # RGB
    DUTS-TR-Mask/000000.png ...    # 8-bit grayscale, 0 bg / 255 object
    meta.json
    README.txt

Backgrounds and object textures (the close-colour case included) are the
toy dataset's, but the objects come from four shape families disjoint from
its classes (smooth star-convex ``blob``, ``triangle``, ``cross``,
``ellipse``): salient objects need not share the target categories. Each
image shows one large, roughly centred object (tight box side 35-85% of the
image side), except exactly one image of every block of ten consecutive
ones (chosen by the seed), which shows two separate, non-touching objects,
both in the mask -- DUTS-TR has such images too, and they give
``SalientDataset(single_object=True)`` something to filter. The salient
images draw from their own random streams, so the default mode's output
does not depend on this mode.
"""
import argparse
import json
import os
import os.path as osp
import struct
import sys
import time
import zlib

import numpy as np

FORMAT_VERSION = 4

CATEGORIES = (
    dict(id=1, name='ring', supercategory='shape'),
    dict(id=2, name='crescent', supercategory='shape'),
    dict(id=3, name='star', supercategory='shape'),
    dict(id=4, name='ell', supercategory='shape'),
)
SPLITS = ('train', 'val', 'test')
# Names of the per-image random streams (the position is the first spawn key
# of :func:`image_rng`). The COCO splits keep their positions, so adding the
# salient streams leaves the default mode's output byte-identical;
# ``salient_multi`` draws which image of each block of ten holds two objects.
RNG_STREAMS = SPLITS + ('salient', 'salient_multi')

# Fill ratio (mask area / tight box area) accepted for a full shape.
SHAPE_FILL_RANGE = (0.30, 0.70)
# Fill ratio accepted for the visible part of an (occluded) instance.
VISIBLE_FILL_RANGE = (0.25, 0.75)
# An occluded instance must keep this fraction of its full area ...
MIN_VISIBLE_FRAC = 0.40
# ... and at least this many pixels.
MIN_VISIBLE_PIXELS = 20
MIN_OBJ_SIZE = 12.0
MAX_OBJ_SIZE_FRAC = 0.6
MAX_OBJECTS = 5
EMPTY_TRAIN_PROB = 0.03
SAME_CLASS_OVERLAP_PROB = 0.3
CLOSE_COLOUR_PROB = 0.15
PLACEMENT_TRIES = 30
SHAPE_TRIES = 200

SALIENT_FORMAT_VERSION = 1
SALIENT_DIRS = ('DUTS-TR-Image', 'DUTS-TR-Mask')
# Longer side of the single salient object's tight box, as a fraction of
# the image side: salient object datasets frame one large object.
SALIENT_SIZE_RANGE = (0.35, 0.85)
# Largest offset of the single object's centre from the image centre.
SALIENT_CENTRE_JITTER = 0.1
# Box side range of each object of a two-object image (further capped so
# that each fits into its half of the image).
SALIENT_MULTI_SIZE_RANGE = (0.25, 0.45)
# Exactly one image of each block of this many consecutive salient images
# holds two objects (~10%).
SALIENT_MULTI_BLOCK = 10


# ---------------------------------------------------------------------------
# Minimal PNG writer and COCO RLE encoder (no heavy dependencies)
# ---------------------------------------------------------------------------
def _png_chunk(tag, data):
    """Return one PNG chunk (length, tag, data, CRC)."""
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', crc)


def encode_png(img):
    """Encode an ``(H, W, 3)`` uint8 RGB or ``(H, W)`` uint8 grayscale array
    as PNG bytes (8 bits per sample, colour type 2 or 0 respectively).

    Every scanline uses filter type 0 (None); the pixel data are
    compressed with ``zlib`` at level 9, so the output is deterministic.
    Grayscale is what the salient masks need: readers such as
    ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` and ``PIL`` mode ``'L'``
    get the stored 0/255 values back unchanged.
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        channels, colour_type = 1, 0
    elif img.ndim == 3 and img.shape[2] == 3:
        channels, colour_type = 3, 2
    else:
        raise ValueError(
            f'expected an (H, W, 3) or (H, W) image, got {img.shape}')
    height, width = img.shape[:2]
    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)
    raw[:, 1:] = img.reshape(height, width * channels)
    header = struct.pack('>IIBBBBB', width, height, 8, colour_type, 0, 0, 0)
    return b''.join([
        b'\x89PNG\r\n\x1a\n',
        _png_chunk(b'IHDR', header),
        _png_chunk(b'IDAT', zlib.compress(raw.tobytes(), 9)),
        _png_chunk(b'IEND', b''),
    ])


def _rle_counts(mask):
    """Column-major run lengths of a binary mask, starting with zeros."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order='F')
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return runs


def _rle_counts_to_string(counts):
    """Compress run lengths like ``rleToString`` in the COCO mask API."""
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return ''.join(chars)


def encode_rle(mask):
    """Encode a binary ``(H, W)`` mask as compressed COCO RLE.

    ``pycocotools`` is used when it can be imported; otherwise an
    equivalent pure Python encoder produces the same string.  ``counts``
    is always returned as ``str`` so that it can be dumped to JSON.
    """
    mask = np.asarray(mask, dtype=np.uint8)
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        mask_utils = None
    if mask_utils is not None:
        rle = mask_utils.encode(np.asfortranarray(mask))
        return dict(
            size=[int(s) for s in rle['size']],
            counts=rle['counts'].decode('ascii'))
    return dict(
        size=[int(mask.shape[0]), int(mask.shape[1])],
        counts=_rle_counts_to_string(_rle_counts(mask)))


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------
def _patch_grid(size):
    """Pixel-centre coordinates of a square patch centred at the origin."""
    side = int(np.ceil(size)) + 4
    coords = np.arange(side, dtype=np.float64) + 0.5 - side / 2.0
    return np.meshgrid(coords, coords)


def _polygon_mask(xs, ys, verts):
    """Even-odd point-in-polygon test, vectorised over the pixel grid."""
    inside = np.zeros(xs.shape, dtype=bool)
    num = len(verts)
    for i in range(num):
        x1, y1 = verts[i]
        x2, y2 = verts[i - 1]
        if y1 == y2:
            continue
        crosses = (y1 > ys) != (y2 > ys)
        x_int = (x2 - x1) * (ys - y1) / (y2 - y1) + x1
        inside ^= crosses & (xs < x_int)
    return inside


def _rotate(verts, angle):
    """Rotate ``(N, 2)`` vertices by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return verts @ np.array([[c, s], [-s, c]])


def _fit_polygon(verts, size):
    """Centre the polygon's box at the origin and scale its side to size."""
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    return (verts - (lo + hi) / 2.0) * (size / float((hi - lo).max()))


def _ring(rng, size):
    """Elliptical annulus (inner radius 0.5-0.65 of the outer one)."""
    a, b = 1.0, rng.uniform(0.7, 1.0)
    angle = rng.uniform(0, np.pi)
    half_w = np.hypot(a * np.cos(angle), b * np.sin(angle))
    half_h = np.hypot(a * np.sin(angle), b * np.cos(angle))
    scale = size / (2.0 * max(half_w, half_h))
    a, b = a * scale, b * scale
    k = rng.uniform(0.5, 0.65)
    xs, ys = _patch_grid(size)
    c, s = np.cos(angle), np.sin(angle)
    u, v = xs * c + ys * s, -xs * s + ys * c
    rho = (u / a)**2 + (v / b)**2
    return (rho <= 1.0) & (rho > k * k)


def _crescent(rng, size):
    """Disc minus a shifted disc."""
    radius = size / 2.0
    radius2 = radius * rng.uniform(0.75, 1.0)
    dist = radius * rng.uniform(0.35, 0.8)
    phi = rng.uniform(0, 2 * np.pi)
    xs, ys = _patch_grid(size)
    outer = xs**2 + ys**2 <= radius**2
    cut = ((xs - dist * np.cos(phi))**2 +
           (ys - dist * np.sin(phi))**2) <= radius2**2
    return outer & ~cut


def _star(rng, size):
    """Five-pointed star with a slightly random aspect and rotation."""
    inner = rng.uniform(0.4, 0.62)
    angles = np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    verts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    verts[:, 1] *= rng.uniform(0.8, 1.0)
    verts = _fit_polygon(_rotate(verts, rng.uniform(0, 2 * np.pi)), size)
    xs, ys = _patch_grid(size)
    return _polygon_mask(xs, ys, verts)


def _ell(rng, size):
    """L-shape with thick or thin arms, arbitrary rotation and mirroring."""
    width, height = 1.0, rng.uniform(0.6, 1.0)
    if rng.random() < 0.5:
        width, height = height, width
    min_t = 2.0 / size  # arms at least ~2 px thick
    tw = max(width * rng.uniform(0.16, 0.5), min_t)
    th = max(height * rng.uniform(0.16, 0.5), min_t)
    verts = np.array(
        [[0, 0], [width, 0], [width, th], [tw, th], [tw, height], [0, height]],
        dtype=np.float64)
    if rng.random() < 0.5:
        verts[:, 0] = -verts[:, 0]
    angle = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:  # often axis aligned
        angle = rng.integers(4) * np.pi / 2
    verts = _fit_polygon(_rotate(verts, angle), size)
    xs, ys = _patch_grid(size)
    return _polygon_mask(xs, ys, verts)


SHAPE_FUNCS = (_ring, _crescent, _star, _ell)


def mask_box(mask):
    """Return the tight ``(x0, y0, x1, y1)`` box (inclusive) of a mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def fill_ratio(mask):
    """Mask area divided by the area of its tight (pixel) box."""
    box = mask_box(mask)
    if box is None:
        return 0.0
    x0, y0, x1, y1 = box
    return float(mask.sum()) / ((x1 - x0 + 1) * (y1 - y0 + 1))


def sample_shape(rng, label, max_size):
    """Sample a cropped binary shape of class ``label``.

    The shape's box side is log-uniform in ``[MIN_OBJ_SIZE, max_size]``
    and its fill ratio is guaranteed to lie in ``SHAPE_FILL_RANGE``.
    """
    lo, hi = SHAPE_FILL_RANGE
    for _ in range(SHAPE_TRIES):
        size = float(
            np.exp(rng.uniform(np.log(MIN_OBJ_SIZE), np.log(max_size))))
        mask = SHAPE_FUNCS[label](rng, size)
        box = mask_box(mask)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        mask = mask[y0:y1 + 1, x0:x1 + 1]
        if lo <= fill_ratio(mask) <= hi and max(mask.shape) <= max_size:
            return mask
    raise RuntimeError(f'could not sample a valid {CATEGORIES[label]} shape')


# ---------------------------------------------------------------------------
# Textures
# ---------------------------------------------------------------------------
def _stripes(rng, size, amp_range, period_range):
    """Sinusoidal stripes with random orientation, period and phase."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(*period_range)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi *
                  (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
    amp = rng.uniform(*amp_range) * rng.uniform(0.5, 1.0, size=3)
    return wave[..., None] * amp


def make_background(rng, size):
    """Smooth colour gradient + low-frequency blobs + stripes + noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    # 128 px images compress a natural scene's slow colour changes ~6x, so
    # gradients and blobs are gentler than their full-size counterparts
    c1 = rng.uniform(40, 215, size=3)
    c2 = np.clip(c1 + rng.uniform(-60, 60, size=3), 20, 235)
    theta = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(theta) + yy * np.sin(theta)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    bg = c1 + (c2 - c1) * t[..., None]
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, 1, size=2)
        sigma = rng.uniform(0.06, 0.25)
        blob = np.exp(-((xx - cx)**2 + (yy - cy)**2) / (2 * sigma**2))
        bg += blob[..., None] * rng.uniform(-25, 25, size=3)
    # Texture amplitudes are kept at the level of natural images seen at the
    # mask stride (4x4 average): strong enough to break a colour model,
    # weak enough that most neighbouring pixels of one region stay similar
    # (BoxInst's pairwise term relies on that, as on COCO).
    if rng.random() < 0.6:
        bg += _stripes(rng, size, (3, 10), (4, 18))
    bg += rng.normal(0, rng.uniform(2, 5), size=bg.shape)
    return bg


def make_object_texture(rng, size, base):
    """Instance texture: base colour + noise + stripes or spots."""
    tex = np.broadcast_to(base, (size, size, 3)).astype(np.float64)
    kind = rng.random()
    if kind < 0.45:
        tex = tex + _stripes(rng, size, (5, 14), (3, 9))
    elif kind < 0.75:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        period = rng.uniform(4, 12)
        spots = (
            np.sin(2 * np.pi * xx / period + rng.uniform(0, 6)) *
            np.sin(2 * np.pi * yy / period + rng.uniform(0, 6)))
        tex = tex + spots[..., None] * rng.uniform(5, 14, size=3)
    return tex + rng.normal(0, rng.uniform(2, 6), size=tex.shape)


# ---------------------------------------------------------------------------
# Image composition
# ---------------------------------------------------------------------------
def _visible_ok(visible, full_area):
    """Whether an occluded instance's visible part is still usable."""
    area = int(visible.sum())
    if area < MIN_VISIBLE_PIXELS or area < MIN_VISIBLE_FRAC * full_area:
        return False
    lo, hi = VISIBLE_FILL_RANGE
    return lo <= fill_ratio(visible) <= hi


def _place_instance(rng, objects, img_size, max_size, label, partner):
    """Try to place a new instance; return its full-image mask or None.

    When ``partner`` is given, the new instance overlaps (occludes) it.
    A placement is rejected if it would leave any earlier instance with a
    too small or degenerate visible part, so nothing painted in the image
    ends up unannotated.
    """
    shape = sample_shape(rng, label, max_size)
    sh, sw = shape.shape
    if partner is None:
        y0 = int(rng.integers(0, img_size - sh + 1))
        x0 = int(rng.integers(0, img_size - sw + 1))
    else:
        px0, py0, px1, py1 = mask_box(partner['visible'])
        pcx, pcy = (px0 + px1 + 1) / 2.0, (py0 + py1 + 1) / 2.0
        reach = 0.5 * (max(px1 - px0 + 1, py1 - py0 + 1) + max(sh, sw))
        dist = reach * rng.uniform(0.3, 0.7)
        phi = rng.uniform(0, 2 * np.pi)
        cx, cy = pcx + dist * np.cos(phi), pcy + dist * np.sin(phi)
        x0 = int(np.clip(round(cx - sw / 2.0), 0, img_size - sw))
        y0 = int(np.clip(round(cy - sh / 2.0), 0, img_size - sh))
    full = np.zeros((img_size, img_size), dtype=bool)
    full[y0:y0 + sh, x0:x0 + sw] = shape
    if partner is not None and not (full & partner['visible']).any():
        return None
    for obj in objects:
        if (obj['visible'] & full).any():
            if not _visible_ok(obj['visible'] & ~full, obj['area']):
                return None
    return full


def make_image(rng, img_size, allow_empty):
    """Compose one image.

    Returns:
        tuple: ``(img, instances)`` with ``img`` an ``(S, S, 3)`` uint8
        array and ``instances`` a list of ``(label, visible_mask)`` in
        drawing order.
    """
    max_size = MAX_OBJ_SIZE_FRAC * img_size
    bg = make_background(rng, img_size)
    if allow_empty and rng.random() < EMPTY_TRAIN_PROB:
        num = 0
    else:
        num = int(rng.integers(1, MAX_OBJECTS + 1))
    objects = []
    for k in range(num):
        partner = None
        if k > 0 and rng.random() < SAME_CLASS_OVERLAP_PROB:
            partner = objects[int(rng.integers(len(objects)))]
        for _ in range(PLACEMENT_TRIES):
            label = (
                partner['label'] if partner is not None else int(
                    rng.integers(len(CATEGORIES))))
            full = _place_instance(rng, objects, img_size, max_size, label,
                                   partner)
            if full is not None:
                break
        else:
            continue
        for obj in objects:
            obj['visible'] &= ~full
        objects.append(
            dict(
                label=label,
                full=full,
                visible=full.copy(),
                area=int(full.sum())))

    img = bg
    for obj in objects:
        if rng.random() < CLOSE_COLOUR_PROB:
            base = bg[obj['full']].mean(axis=0) + rng.uniform(-15, 15, 3)
        else:
            base = rng.uniform(20, 235, size=3)
        tex = make_object_texture(rng, img_size, base)
        img = np.where(obj['full'][..., None], tex, img)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img, [(obj['label'], obj['visible']) for obj in objects]


# ---------------------------------------------------------------------------
# Salient images (--salient)
# ---------------------------------------------------------------------------
def _dilate(mask, radius=1):
    """Binary dilation of a bool mask with a ``(2 r + 1)^2`` square."""
    height, width = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + height, dx:dx + width]
    return out


def _is_connected(mask):
    """Whether the True pixels of ``mask`` form one 8-connected component.

    A geodesic flood fill from the first pixel; used to reject a shape
    whose rasterisation broke into pieces (a thin arm or a sharp tip), which
    would make a single-object salient image look like a multi-object one.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return False
    filled = np.zeros_like(mask)
    filled[ys[0], xs[0]] = True
    while True:
        grown = _dilate(filled) & mask
        if (grown == filled).all():
            return bool((filled == mask).all())
        filled = grown


def _blob(rng, size):
    """Smooth star-convex blob.

    The radius is ``1 + sum_k a_k sin(k t + p_k)`` over the harmonics
    ``k = 2, 3, 4`` with amplitudes summing to 0.15-0.45: a few gentle
    lobes, never the sharp spikes of the toy class ``star``.
    """
    harmonics = np.array([2.0, 3.0, 4.0])
    amps = rng.uniform(0, 1, size=3) / harmonics
    amps *= rng.uniform(0.15, 0.45) / amps.sum()
    phases = rng.uniform(0, 2 * np.pi, size=3)
    t = np.linspace(0, 2 * np.pi, 128, endpoint=False)
    radius = 1.0 + (amps[:, None] * np.sin(harmonics[:, None] * t +
                                           phases[:, None])).sum(axis=0)
    verts = np.stack([radius * np.cos(t), radius * np.sin(t)], 1)
    verts[:, 1] *= rng.uniform(0.65, 1.0)
    verts = _fit_polygon(_rotate(verts, rng.uniform(0, 2 * np.pi)), size)
    xs, ys = _patch_grid(size)
    return _polygon_mask(xs, ys, verts)


def _triangle(rng, size):
    """Triangle with all angles >= 25 degrees.

    Its vertices lie on a circle; each angle is half the opposite arc, so
    arcs of at least 50 degrees bound the angles (no needle-thin tips).
    """
    min_arc = np.deg2rad(50)
    arcs = min_arc + (2 * np.pi - 3 * min_arc) * rng.dirichlet((2, 2, 2))
    angles = rng.uniform(0, 2 * np.pi) + np.cumsum(arcs)
    verts = np.stack([np.cos(angles), np.sin(angles)], 1)
    verts = _fit_polygon(verts, size)
    xs, ys = _patch_grid(size)
    return _polygon_mask(xs, ys, verts)


def _cross(rng, size):
    """Plus sign: two perpendicular bars crossing near their middles.

    Bars are 20-34% of their span thick and cross at 40-60% of it, so all
    four arms stick out (unlike the two-armed toy class ``ell``).
    """
    height = rng.uniform(0.7, 1.0)
    bar_h = rng.uniform(0.2, 0.34) * height  # thickness, horizontal bar
    bar_v = rng.uniform(0.2, 0.34)  # thickness, vertical bar
    cy = rng.uniform(0.4, 0.6) * height
    cx = rng.uniform(0.4, 0.6)
    rects = np.array([[[0, cy - bar_h / 2], [1, cy - bar_h / 2],
                       [1, cy + bar_h / 2], [0, cy + bar_h / 2]],
                      [[cx - bar_v / 2, 0], [cx + bar_v / 2, 0],
                       [cx + bar_v / 2, height], [cx - bar_v / 2, height]]],
                     dtype=np.float64)
    verts = _rotate(rects.reshape(8, 2), rng.uniform(0, 2 * np.pi))
    verts = _fit_polygon(verts, size).reshape(2, 4, 2)
    xs, ys = _patch_grid(size)
    return _polygon_mask(xs, ys, verts[0]) | _polygon_mask(xs, ys, verts[1])


def _ellipse(rng, size):
    """Filled ellipse (axis ratio 0.45-0.9), arbitrary rotation."""
    a, b = 1.0, rng.uniform(0.45, 0.9)
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    scale = size / (2.0 * max(np.hypot(a * c, b * s), np.hypot(a * s, b * c)))
    xs, ys = _patch_grid(size)
    u, v = xs * c + ys * s, -xs * s + ys * c
    return (u / (a * scale))**2 + (v / (b * scale))**2 <= 1.0


# Shape families of the salient images, disjoint from CATEGORIES: the
# salient objects need not share the target data's categories.
SALIENT_SHAPES = (('blob', _blob), ('triangle', _triangle), ('cross', _cross),
                  ('ellipse', _ellipse))


def sample_salient_shape(rng, kind, min_side, max_side):
    """Sample a cropped, 8-connected binary shape of salient family kind.

    The longer side of its tight box is uniform in ``[min_side, max_side]``
    pixels.
    """
    name, func = SALIENT_SHAPES[kind]
    for _ in range(SHAPE_TRIES):
        mask = func(rng, rng.uniform(min_side, max_side))
        box = mask_box(mask)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        mask = mask[y0:y1 + 1, x0:x1 + 1]
        if (min_side <= max(mask.shape) <= max_side and _is_connected(mask)):
            return mask
    raise RuntimeError(f'could not sample a valid salient {name} shape')


def salient_multi_index(seed, block):
    """Index of the one two-object image of the block ``block`` of
    :data:`SALIENT_MULTI_BLOCK` consecutive salient images.

    Drawn from its own stream, so that which images hold two objects is
    fixed by the seed alone, independent of ``--num-salient``.
    """
    rng = image_rng(seed, 'salient_multi', block)
    return block * SALIENT_MULTI_BLOCK + int(rng.integers(SALIENT_MULTI_BLOCK))


def make_salient_image(rng, img_size, multi):
    """Compose one salient image on a toy-style background.

    One large, roughly centred object; or, when ``multi``, two smaller
    objects in the two halves of the image (split left/right or top/bottom)
    separated by a gap of at least 2 px, so that they never form one
    8-connected component.

    Returns:
        tuple: ``(img, mask, shapes)``: ``img`` an ``(S, S, 3)`` uint8 RGB
        array, ``mask`` an ``(S, S)`` uint8 array with 255 on the union of
        the objects and 0 elsewhere, and ``shapes`` a list of ``(kind,
        box_side)`` per object.
    """
    bg = make_background(rng, img_size)
    placed = []
    if not multi:
        lo, hi = SALIENT_SIZE_RANGE
        kind = int(rng.integers(len(SALIENT_SHAPES)))
        shape = sample_salient_shape(rng, kind, lo * img_size, hi * img_size)
        sh, sw = shape.shape
        cx, cy = img_size / 2.0 + img_size * rng.uniform(
            -SALIENT_CENTRE_JITTER, SALIENT_CENTRE_JITTER, size=2)
        x0 = int(np.clip(round(cx - sw / 2.0), 0, img_size - sw))
        y0 = int(np.clip(round(cy - sh / 2.0), 0, img_size - sh))
        placed.append((kind, shape, x0, y0))
    else:
        half_gap = max(1, img_size // 32)
        mid = img_size // 2
        lo = SALIENT_MULTI_SIZE_RANGE[0] * img_size
        hi = min(SALIENT_MULTI_SIZE_RANGE[1] * img_size, mid - half_gap)
        split_rows = rng.random() < 0.5  # top/bottom instead of left/right
        for lo_a, hi_a in ((0, mid - half_gap), (mid + half_gap, img_size)):
            kind = int(rng.integers(len(SALIENT_SHAPES)))
            shape = sample_salient_shape(rng, kind, lo, hi)
            sh, sw = shape.shape
            along, across = (sh, sw) if split_rows else (sw, sh)
            a0 = int(rng.integers(lo_a, hi_a - along + 1))
            b0 = int(rng.integers(0, img_size - across + 1))
            x0, y0 = (b0, a0) if split_rows else (a0, b0)
            placed.append((kind, shape, x0, y0))

    img, union, shapes = bg, np.zeros((img_size, img_size), bool), []
    for kind, shape, x0, y0 in placed:
        full = np.zeros((img_size, img_size), dtype=bool)
        full[y0:y0 + shape.shape[0], x0:x0 + shape.shape[1]] = shape
        # same colour model as the toy images, close-colour case included
        if rng.random() < CLOSE_COLOUR_PROB:
            base = bg[full].mean(axis=0) + rng.uniform(-15, 15, 3)
        else:
            base = rng.uniform(20, 235, size=3)
        tex = make_object_texture(rng, img_size, base)
        img = np.where(full[..., None], tex, img)
        union |= full
        shapes.append((SALIENT_SHAPES[kind][0], max(shape.shape)))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img, union.astype(np.uint8) * 255, shapes


# ---------------------------------------------------------------------------
# Dataset writing
# ---------------------------------------------------------------------------
def image_rng(seed, split, index):
    """Independent generator for image ``index`` of ``split``.

    ``split`` is any name of :data:`RNG_STREAMS`: a COCO split, or one of
    the salient mode's streams.
    """
    seq = np.random.SeedSequence(
        int(seed), spawn_key=(RNG_STREAMS.index(split), int(index)))
    return np.random.default_rng(seq)


def _make_meta(seed, num_train, num_val, num_test, img_size):
    return dict(
        format_version=FORMAT_VERSION,
        seed=int(seed),
        num_train=int(num_train),
        num_val=int(num_val),
        num_test=int(num_test),
        img_size=int(img_size))


def _split_sizes(meta):
    return dict(
        train=meta['num_train'], val=meta['num_val'], test=meta['num_test'])


def _make_salient_meta(seed, num_salient, img_size):
    return dict(
        format_version=SALIENT_FORMAT_VERSION,
        mode='salient',
        seed=int(seed),
        num_salient=int(num_salient),
        img_size=int(img_size))


def is_complete(out_dir, meta):
    """Whether ``out_dir`` holds a complete dataset generated with meta.

    ``meta`` is either the default mode's or (``mode='salient'``) the
    salient mode's; the two never compare equal.
    """
    meta_file = osp.join(out_dir, 'meta.json')
    if not osp.isfile(meta_file):
        return False
    try:
        with open(meta_file) as f:
            if json.load(f) != meta:
                return False
    except (OSError, ValueError):
        return False
    if meta.get('mode') == 'salient':
        return all(
            osp.isfile(osp.join(out_dir, folder, f'{i:06d}.png'))
            for folder in SALIENT_DIRS for i in range(meta['num_salient']))
    for split, num in _split_sizes(meta).items():
        names = [f'instances_{split}.json']
        if split == 'train':
            names.append('instances_train_with_masks.json')
        if not all(
                osp.isfile(osp.join(out_dir, 'annotations', name))
                for name in names):
            return False
        img_dir = osp.join(out_dir, 'images', split)
        for i in range(num):
            if not osp.isfile(osp.join(img_dir, f'{i:06d}.png')):
                return False
    return True


class _Progress:
    """``mmengine.utils.ProgressBar`` if available, else sparse prints."""

    def __init__(self, split, total):
        self.split, self.total, self.done = split, total, 0
        self.bar = None
        try:
            from mmengine.utils import ProgressBar
        except ImportError:
            ProgressBar = None
        if ProgressBar is not None and total > 0:
            print(f'{split}:')
            self.bar = ProgressBar(total)

    def update(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update()
        elif self.done % 50 == 0 or self.done == self.total:
            print(
                f'  {self.split}: {self.done}/{self.total} images', flush=True)

    def close(self):
        if self.bar is not None:
            sys.stdout.write('\n')


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)
        f.write('\n')


def generate_split(out_dir, seed, split, num, img_size):
    """Write the images and the annotation file of one split.

    Returns:
        dict: counts of images, instances and empty images, and the fill
        ratios of all instances.
    """
    # train: boxes only; the same instances with masks go to a second file
    # used only by the mask-supervised upper bound (CondInst) and by the
    # test proving that box-only training never reads masks
    with_masks = split != 'train'
    img_dir = osp.join(out_dir, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    # remove stale images of a previous (larger) generation
    for name in sorted(os.listdir(img_dir)):
        stem, ext = osp.splitext(name)
        if ext == '.png' and stem.isdigit() and int(stem) >= num:
            os.remove(osp.join(img_dir, name))
    images, annotations, masked_annotations, fills = [], [], [], []
    num_empty = 0
    progress = _Progress(split, num)
    for i in range(num):
        rng = image_rng(seed, split, i)
        img, instances = make_image(rng, img_size, allow_empty=not with_masks)
        file_name = f'{i:06d}.png'
        with open(osp.join(img_dir, file_name), 'wb') as f:
            f.write(encode_png(img))
        image_id = i + 1
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                height=img_size,
                width=img_size))
        num_empty += not instances
        for label, mask in instances:
            x0, y0, x1, y1 = mask_box(mask)
            area = int(mask.sum())
            w, h = x1 - x0 + 1, y1 - y0 + 1
            fills.append(area / float(w * h))
            ann = dict(
                id=len(annotations) + 1,
                image_id=image_id,
                category_id=CATEGORIES[label]['id'],
                bbox=[float(x0), float(y0),
                      float(w), float(h)],
                # the box-only file must not leak the mask size either
                area=float(w * h),
                iscrowd=0)
            annotations.append(ann)
            masked_annotations.append(
                dict(ann, area=float(area), segmentation=encode_rle(mask)))
        progress.update()
    progress.close()

    def coco(anns):
        return dict(
            info=dict(
                description=f'mmboxseg toy dataset ({split})',
                version=str(FORMAT_VERSION)),
            licenses=[],
            images=images,
            annotations=anns,
            categories=[dict(c) for c in CATEGORIES])

    ann_dir = osp.join(out_dir, 'annotations')
    if with_masks:
        _write_json(
            osp.join(ann_dir, f'instances_{split}.json'),
            coco(masked_annotations))
    else:
        _write_json(
            osp.join(ann_dir, f'instances_{split}.json'), coco(annotations))
        _write_json(
            osp.join(ann_dir, f'instances_{split}_with_masks.json'),
            coco(masked_annotations))
    return dict(
        images=num, instances=len(annotations), empty=num_empty, fills=fills)


def _readme(meta, out_dir):
    return ('mmboxseg toy dataset: a synthetic COCO-format instance '
            'segmentation dataset for testing box-supervised training. '
            f"It has {meta['num_train']} train, {meta['num_val']} val and "
            f"{meta['num_test']} test RGB PNG images of "
            f"{meta['img_size']}x{meta['img_size']} px with 0-5 textured, "
            'possibly overlapping objects of 4 non-convex shape classes '
            '(ring, crescent, star, ell) on textured backgrounds. '
            'annotations/instances_train.json has boxes only (no '
            "'segmentation' key); instances_val.json and instances_test.json "
            'also have RLE masks of the visible object parts, and so has '
            'instances_train_with_masks.json (the same training instances, '
            'for the mask-supervised upper bound only). file_name is '
            "relative to images/<split>/ (data_prefix=dict(img='images/"
            "train/')). Generated deterministically with seed "
            f"{meta['seed']} by: python tools/misc/make_toy_dataset.py "
            f"--out {out_dir} --seed {meta['seed']} "
            f"--num-train {meta['num_train']} --num-val {meta['num_val']} "
            f"--num-test {meta['num_test']} --img-size {meta['img_size']}\n")


def generate(out_dir,
             seed=0,
             num_train=400,
             num_val=60,
             num_test=60,
             img_size=128):
    """Generate the whole toy dataset in ``out_dir`` (always rewrites).

    Returns:
        dict: per split statistics as returned by :func:`generate_split`.
    """
    if img_size < 32:
        raise ValueError(f'img_size must be >= 32, got {img_size}')
    for name, num in (('num_train', num_train), ('num_val', num_val),
                      ('num_test', num_test)):
        if num < 0:
            raise ValueError(f'{name} must be >= 0, got {num}')
    meta = _make_meta(seed, num_train, num_val, num_test, img_size)
    meta_file = osp.join(out_dir, 'meta.json')
    if osp.isfile(meta_file):  # invalidate until the new one is complete
        os.remove(meta_file)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    stats = {}
    for split, num in _split_sizes(meta).items():
        stats[split] = generate_split(out_dir, seed, split, num, img_size)
    with open(osp.join(out_dir, 'README.txt'), 'w') as f:
        f.write(_readme(meta, out_dir))
    _write_json(meta_file, meta)
    return stats


def _salient_readme(meta, out_dir, multi):
    block = SALIENT_MULTI_BLOCK
    return (
        'mmboxseg toy salient dataset: synthetic salient-object images in '
        'the DUTS-TR layout, for training class-agnostic segmentation '
        'jointly with box crops (BoxCaseg). '
        f"DUTS-TR-Image/ holds {meta['num_salient']} RGB PNG images of "
        f"{meta['img_size']}x{meta['img_size']} px and DUTS-TR-Mask/ the "
        'masks of the same names (8-bit grayscale PNG, 0 background, 255 '
        'object). Backgrounds and object textures are those of the toy '
        'dataset (make_toy_dataset.py without --salient), but the objects '
        'are of four other shape families (blob, triangle, cross, ellipse), '
        'disjoint from its classes (ring, crescent, star, ell): salient '
        'objects need not share the target categories. Each image has one '
        'large, roughly centred object (tight box side 35-85% of the image '
        f'side), except one image in every block of {block} consecutive '
        f'ones ({len(multi)} images here: {", ".join(multi) or "none"}) '
        'which has TWO separate, non-touching objects, both in the mask, '
        'like the multi-object images of DUTS-TR; SalientDataset('
        'single_object=True) filters them out. Generated deterministically '
        f"with seed {meta['seed']} by: python tools/misc/make_toy_dataset.py "
        f"--salient --out {out_dir} --num-salient {meta['num_salient']} "
        f"--seed {meta['seed']} --img-size {meta['img_size']}\n")


def generate_salient(out_dir, seed=0, num_salient=300, img_size=128):
    """Generate the salient dataset in ``out_dir`` (always rewrites).

    Image ``i`` draws from the ``'salient'`` stream of :func:`image_rng`
    (not used by the default mode, whose output is therefore unchanged);
    whether it holds two objects comes from :func:`salient_multi_index`.

    Returns:
        dict: ``images`` (count), ``multi`` (indices of the two-object
        images), ``shapes`` (``(kind, box_side)`` of every object).
    """
    if img_size < 32:
        raise ValueError(f'img_size must be >= 32, got {img_size}')
    if num_salient < 0:
        raise ValueError(f'num_salient must be >= 0, got {num_salient}')
    meta = _make_salient_meta(seed, num_salient, img_size)
    meta_file = osp.join(out_dir, 'meta.json')
    if osp.isfile(meta_file):  # invalidate until the new one is complete
        os.remove(meta_file)
    dirs = [osp.join(out_dir, folder) for folder in SALIENT_DIRS]
    for folder in dirs:
        os.makedirs(folder, exist_ok=True)
        # remove stale files of a previous (larger) generation
        for name in sorted(os.listdir(folder)):
            stem, ext = osp.splitext(name)
            if ext == '.png' and stem.isdigit() and int(stem) >= num_salient:
                os.remove(osp.join(folder, name))
    multi, shapes = [], []
    progress = _Progress('salient', num_salient)
    for i in range(num_salient):
        is_multi = salient_multi_index(seed, i // SALIENT_MULTI_BLOCK) == i
        img, mask, objects = make_salient_image(
            image_rng(seed, 'salient', i), img_size, is_multi)
        for folder, array in zip(dirs, (img, mask)):
            with open(osp.join(folder, f'{i:06d}.png'), 'wb') as f:
                f.write(encode_png(array))
        if is_multi:
            multi.append(i)
        shapes.extend(objects)
        progress.update()
    progress.close()
    with open(osp.join(out_dir, 'README.txt'), 'w') as f:
        f.write(_salient_readme(meta, out_dir, [f'{i:06d}' for i in multi]))
    _write_json(meta_file, meta)
    return dict(images=num_salient, multi=multi, shapes=shapes)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a synthetic COCO dataset (boxes-only train, '
        'boxes + masks val/test) for box-supervised segmentation or, with '
        '--salient, a DUTS-TR style salient-object dataset (images + '
        'binary masks, objects of shape families disjoint from the COCO '
        'set\'s classes, one image in ten with two objects).')
    parser.add_argument(
        '--out',
        default=None,
        help='output folder (default: data/toy, or data/toy_salient with '
        '--salient)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--num-train', type=int, default=400, help='ignored with --salient')
    parser.add_argument(
        '--num-val', type=int, default=60, help='ignored with --salient')
    parser.add_argument(
        '--num-test', type=int, default=60, help='ignored with --salient')
    parser.add_argument(
        '--salient',
        action='store_true',
        help='write the salient dataset (DUTS-TR-Image/, DUTS-TR-Mask/) '
        'instead of the COCO one')
    parser.add_argument(
        '--num-salient',
        type=int,
        default=300,
        help='number of salient images (with --salient only)')
    parser.add_argument(
        '--img-size', type=int, default=128, help='square image side (px)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='regenerate even if a matching dataset is present')
    return parser.parse_args(argv)


def _main_salient(args):
    out = args.out if args.out is not None else 'data/toy_salient'
    meta = _make_salient_meta(args.seed, args.num_salient, args.img_size)
    if not args.force and is_complete(out, meta):
        print(f'salient dataset already present at {out} '
              '(use --force to regenerate)')
        return 0
    start = time.time()
    stats = generate_salient(out, args.seed, args.num_salient, args.img_size)
    kinds = [kind for kind, _ in stats['shapes']]
    sides = np.asarray([side for _, side in stats['shapes']], np.float64)
    kind_txt = ', '.join(f'{name} {kinds.count(name)}'
                         for name, _ in SALIENT_SHAPES)
    side_txt = (f', box side {sides.min():.0f}/{sides.mean():.1f}/'
                f'{sides.max():.0f} px (min/mean/max)' if sides.size else '')
    print(f"salient: {stats['images']} images, {len(stats['multi'])} with "
          f'two objects, objects: {kind_txt}{side_txt}')
    print(f'salient dataset written to {out} in {time.time() - start:.1f}s')
    return 0


def main(argv=None):
    """Command line entry point; returns the exit status."""
    args = parse_args(argv)
    if args.salient:
        return _main_salient(args)
    if args.out is None:
        args.out = 'data/toy'
    meta = _make_meta(args.seed, args.num_train, args.num_val, args.num_test,
                      args.img_size)
    if not args.force and is_complete(args.out, meta):
        print(f'toy dataset already present at {args.out} '
              '(use --force to regenerate)')
        return 0
    start = time.time()
    stats = generate(args.out, args.seed, args.num_train, args.num_val,
                     args.num_test, args.img_size)
    for split, st in stats.items():
        fills = np.asarray(st['fills'])
        fill_txt = (f', fill {fills.min():.2f}/{fills.mean():.2f}/'
                    f'{fills.max():.2f} (min/mean/max)' if fills.size else '')
        print(f"{split}: {st['images']} images, {st['instances']} "
              f"instances, {st['empty']} empty images{fill_txt}")
    print(f'toy dataset written to {args.out} in {time.time() - start:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
