# Copyright (c) mmboxseg contributors. All rights reserved.
import csv
import os.path as osp
from typing import Iterable, List, Optional, Set, Tuple

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.fileio import get_local_path

from mmboxseg.registry import DATASETS
from .box_coco_dataset import AnnotationFileError

REQUIRED_COLUMNS = ('source_image', 'target_image', 'XA', 'YA', 'XB', 'YB')
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
               'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')


def pair_image_names(pair_files: Iterable[str]) -> Set[str]:
    """File names (without folders) of every source and target image of
    PF-PASCAL pair lists (NC-Net/SCOT CSVs: a header, then the source and
    target image paths in the first two columns, as the release's
    ``get_voctraining_excluding_pfpascaltesting.py`` reads them)."""
    names = set()
    for path in pair_files:
        with get_local_path(path) as local, open(local, newline='') as f:
            rows = list(csv.reader(f))
        if not rows or len(rows[0]) < 2:
            raise AnnotationFileError(
                f'{path}: expected a header and source,target,... rows')
        for row in rows[1:]:
            if len(row) < 2:
                continue
            names.update(osp.basename(p.strip()) for p in row[:2])
    return names


def exclude_pair_images(coco: dict,
                        pair_files: Iterable[str]) -> Tuple[dict, int]:
    """A COCO annotation dict without the images (and their annotations)
    that occur in PF-PASCAL pair lists, matched by file name (DiscoBox Sec.
    4.4: VOC training "excluding those images that are present in the
    PF-PASCAL validation set"; release
    ``tools/get_voctraining_excluding_pfpascaltesting.py``, whose default
    pair list, ``trn_pairs.csv``, contradicts its name; pass the
    validation and test lists).

    Args:
        coco (dict): COCO-format dict (``images``, ``annotations``, ...);
            not modified.
        pair_files (Iterable[str]): Pair CSVs (e.g. ``val_pairs.csv`` and
            ``test_pairs.csv``).

    Returns:
        tuple: The filtered dict (other keys copied) and the number of
        images removed.
    """
    names = pair_image_names(pair_files)
    images = [
        im for im in coco['images']
        if osp.basename(im['file_name']) not in names
    ]
    kept = {im['id'] for im in images}
    out = dict(coco)
    out['images'] = images
    out['annotations'] = [
        a for a in coco.get('annotations', []) if a['image_id'] in kept
    ]
    return out, len(coco['images']) - len(images)


def _floats(path: str, row: int, field: str, text: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in text.split(';') if v.strip()],
                        dtype=np.float32)
    except ValueError:
        raise AnnotationFileError(
            f'{path}: row {row}, field `{field}`: expected numbers joined by '
            f"';', got {text[:60]!r}") from None


@DATASETS.register_module()
class PFPascalPairDataset(BaseDataset):
    """Image pairs with keypoint correspondences in PF-PASCAL's CSV format
    (Ham et al., as distributed with NC-Net/SCOT: ``test_pairs.csv``).

    Columns: ``source_image``, ``target_image`` (paths relative to
    ``data_prefix['img']``), ``XA``, ``YA``, ``XB``, ``YB`` (keypoint
    coordinates in pixels, joined by ``;``; point ``n`` of the source
    matches point ``n`` of the target; negative coordinates mark a missing
    point), optional ``class`` (1-based VOC index) and the optional
    extension ``bboxA``/``bboxB`` (``x1;y1;x2;y2``, the object boxes that
    PCK@alpha_bbox needs; PF-PASCAL keeps them in its per-image ``.mat``
    annotations). ``tools/misc/make_toy_correspondence_pairs.py`` writes
    this format.

    Every data info holds ``src_img_path``, ``trg_img_path``,
    ``src_keypoints``/``trg_keypoints`` ``[N, 2]`` float32,
    ``keypoint_valid [N]`` bool, ``src_bbox``/``trg_bbox`` (``[4]`` or
    None) and ``category``.

    Raises:
        AnnotationFileError: Naming the file, row and field of a malformed
            entry.
        FileNotFoundError: When an image is missing.
    """

    METAINFO = dict(classes=VOC_CLASSES)

    def __init__(self, *args, check_files: bool = True, **kwargs) -> None:
        self.check_files = check_files
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        path = self.ann_file
        if not osp.isfile(path) and '://' not in path:
            raise FileNotFoundError(f'pair annotation file {path} does not '
                                    'exist')
        with get_local_path(path) as local, open(local, newline='') as f:
            reader = csv.DictReader(f)
            missing = set(REQUIRED_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise AnnotationFileError(
                    f'{path}: header lacks the columns {sorted(missing)} '
                    f'(has {reader.fieldnames})')
            rows = list(reader)
        data_list = []
        for row_no, row in enumerate(rows, start=2):
            info = self._parse_row(path, row_no, row)
            info['pair_id'] = len(data_list)
            data_list.append(info)
        if not data_list:
            raise AnnotationFileError(f'{path}: no pairs')
        return data_list

    def _parse_row(self, path: str, row_no: int, row: dict) -> dict:
        coords = {
            k: _floats(path, row_no, k, row[k] or '')
            for k in ('XA', 'YA', 'XB', 'YB')
        }
        sizes = {k: len(v) for k, v in coords.items()}
        if len(set(sizes.values())) != 1 or sizes['XA'] == 0:
            raise AnnotationFileError(
                f'{path}: row {row_no}, fields `XA`, `YA`, `XB`, `YB`: '
                f'need the same non-zero number of points, got {sizes}')
        src = np.stack([coords['XA'], coords['YA']], axis=1)
        trg = np.stack([coords['XB'], coords['YB']], axis=1)
        info = dict(
            src_img_path=osp.join(
                self.data_prefix.get('img', ''), row['source_image']),
            trg_img_path=osp.join(
                self.data_prefix.get('img', ''), row['target_image']),
            src_keypoints=src,
            trg_keypoints=trg,
            keypoint_valid=(src >= 0).all(1) & (trg >= 0).all(1),
            category=int(row['class']) - 1 if row.get('class') else -1)
        for side, key in (('src_bbox', 'bboxA'), ('trg_bbox', 'bboxB')):
            text = row.get(key)
            box: Optional[np.ndarray] = None
            if text:
                box = _floats(path, row_no, key, text)
                if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                    raise AnnotationFileError(
                        f'{path}: row {row_no}, field `{key}`: need '
                        f'x1;y1;x2;y2 with x2 > x1 and y2 > y1, got {text}')
            info[side] = box
        if self.check_files:
            for key in ('src_img_path', 'trg_img_path'):
                if '://' not in info[key] and not osp.isfile(info[key]):
                    raise FileNotFoundError(
                        f'image file {info[key]} (row {row_no} of {path}) '
                        'does not exist')
        return info
