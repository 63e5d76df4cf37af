# Copyright (c) mmboxseg contributors. All rights reserved.
"""Helpers of the tools that write masks into box-annotated COCO files
(``tools/boxcaseg/generate_proxy_masks.py``,
``tools/misc/export_pseudo_masks.py``).

- **Input**: :func:`valid_box` (which boxes get a mask, as
  :class:`~mmboxseg.datasets.BoxCocoDataset` decides), :func:`load_image`
  (an image checked against the size its COCO entry states) and
  :func:`load_gt_masks` (ground-truth masks for a quality report).
- **Output**: :func:`encode_mask` (compressed RLE, JSON ready) and
  :func:`write_json_atomic`.
- **Command line**: :func:`add_io_arguments` (model, checkpoint, input and
  output COCO files, image folder, device).
- **Resumable runs**: finished images are appended, one JSON line each, to a
  *partial* file whose first line is a header of digests of everything that
  decides the result (:func:`file_digest`, :func:`config_digest`).
  :func:`open_partial` starts it or, with ``resume``, reads it back
  (:func:`read_partial`: a torn last line is dropped, a header of other
  inputs refused).
"""
import hashlib
import json
import os
import os.path as osp

import mmcv
import numpy as np


def add_io_arguments(parser, model_help, batch_default, batch_help):
    """The arguments every mask-writing tool takes: ``config``,
    ``checkpoint``, ``in_ann``, ``out_ann``, ``--img-prefix``,
    ``--batch-size`` and ``--device``."""
    parser.add_argument('config', help=f'{model_help} config')
    parser.add_argument('checkpoint', help=f'{model_help} checkpoint')
    parser.add_argument('in_ann', help='COCO file with boxes')
    parser.add_argument('out_ann', help='COCO file to write')
    parser.add_argument(
        '--img-prefix', required=True, help='folder of the images')
    parser.add_argument(
        '--batch-size', type=int, default=batch_default, help=batch_help)
    parser.add_argument('--device', default='cpu')


def file_digest(path):
    """SHA-1 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def config_digest(**parts):
    """SHA-1 hex digest of config parts (e.g. ``model=cfg.model``), of their
    JSON with sorted keys (non-JSON values as ``str``)."""
    text = json.dumps(dict(parts), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def encode_mask(mask):
    """Compressed COCO RLE of an ``[H, W]`` bool mask, JSON ready."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def valid_box(ann, img_w, img_h, min_size=1.0):
    """Clipped xyxy box of an annotation or None (crowd, degenerate or
    outside the image), as :class:`BoxCocoDataset` decides."""
    if ann.get('iscrowd', 0) or ann.get('ignore', False):
        return None
    x, y, w, h = ann['bbox']
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, img_w), min(y + h, img_h)
    if x2 - x1 < min_size or y2 - y1 < min_size:
        return None
    return [float(x1), float(y1), float(x2), float(y2)]


def load_image(img_prefix, im, ann_file):
    """The ``[H, W, 3]`` BGR image of a COCO ``images`` entry ``im`` (of the
    file ``ann_file``), checked against its ``width``/``height``.

    Raises:
        FileNotFoundError: The file cannot be read.
        ValueError: Its size is not the one the entry states.
    """
    path = osp.join(img_prefix, im['file_name'])
    try:
        img = mmcv.imread(path)
    except FileNotFoundError:  # mmcv 2 raises where mmcv 1 returned None
        img = None
    where = f'image id {im["id"]} in {ann_file}'
    if img is None:
        raise FileNotFoundError(
            f'image file {path} (file_name of {where}) cannot be read')
    if img.shape[:2] != (im['height'], im['width']):
        raise ValueError(
            f'{path} is {img.shape[1]}x{img.shape[0]} but fields `width`/'
            f'`height` of {where} say {im["width"]}x{im["height"]}; boxes '
            'and masks would be misplaced')
    return img


def load_gt_masks(path):
    """``{annotation id: (segmentation, height, width)}`` of the masked
    annotations of a COCO file, decoded only when scored."""
    with open(path) as f:
        content = json.load(f)
    sizes = {im['id']: (im['height'], im['width']) for im in content['images']}
    return {
        ann['id']: (ann['segmentation'], *sizes[ann['image_id']])
        for ann in content['annotations'] if ann.get('segmentation')
    }


def read_partial(path, header):
    """Finished images of an interrupted run; a torn last line is
    dropped and the file rewritten (atomically) without it.

    Args:
        path (str): The partial ``.jsonl`` file.
        header (dict): The header the current run would write.

    Returns:
        dict: ``{image_id: record}`` of the finished images.

    Raises:
        SystemExit: The header is torn or differs from ``header`` (naming
            the keys that differ).
    """
    done, lines = {}, []
    with open(path) as f:
        raw = f.read().splitlines()
    try:
        found = json.loads(raw[0]) if raw else None
    except json.JSONDecodeError:
        found = None
    if found is None:
        raise SystemExit(f'{path} has no readable header (interrupted at '
                         'the start); delete it or run without --resume')
    if found != header:
        changed = sorted(
            k for k in set(header) | set(found)
            if header.get(k) != found.get(k))
        raise SystemExit(
            f'{path} was written for other inputs or options (differs in '
            f'{", ".join(changed)}); delete it or run without --resume')
    for line in raw[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # interrupted while writing this line
        done[rec['image_id']] = rec
        lines.append(line)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join([raw[0]] + lines) + '\n')
    os.replace(tmp, path)
    return done


def open_partial(path, header, resume):
    """Start the partial file ``path`` with ``header`` or, with ``resume``
    and an existing file, read its finished images back
    (:func:`read_partial`).

    Returns:
        dict: ``{image_id: record}`` of the finished images (empty for a
        fresh start).
    """
    if resume and osp.isfile(path):
        done = read_partial(path, header)
        print(f'resuming: {len(done)} images already done')
        return done
    with open(path, 'w') as f:
        f.write(json.dumps(header) + '\n')
    return {}


def write_json_atomic(content, path):
    """``json.dump`` to ``path`` through a temporary file and a rename, so
    that an interruption never leaves a truncated ``path``."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(content, f)
    os.replace(tmp, path)
