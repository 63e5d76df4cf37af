# Copyright (c) mmboxseg contributors. All rights reserved.
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmboxseg.registry import DATASETS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


@DATASETS.register_module()
class SalientDataset(BaseDataset):
    """Salient-object images with binary masks in the DUTS-TR layout.

    BoxCaseg trains class-agnostic segmentation on box crops of the target
    data together with salient images: single, large objects of arbitrary
    categories with pixel masks. The layout is::

        data_root/DUTS-TR-Image/<stem>.jpg   (or .jpeg, .png, .bmp)
        data_root/DUTS-TR-Mask/<stem>.png    (grayscale, 0 bg / 255 object)

    Images and masks are paired by stem. ``tools/misc/make_toy_dataset.py
    --salient`` writes a synthetic set in this layout.

    DUTS-TR also holds images with several salient objects, which make a
    poor "one object per box" training signal; with ``single_object`` only
    images whose binarised mask has exactly one object are kept (the
    BoxCaseg paper trains on such a single-object subset). An object is an
    8-connected component of ``mask >= mask_thr`` whose area is at least
    ``min_component_frac`` of the mask's foreground area; smaller
    components are annotation noise (specks) and do not count. Images with
    an empty mask are dropped too. Every mask is read once at
    initialisation for this, which takes a few seconds for the 10k images
    of DUTS-TR. Alternatively (or in addition) ``ann_file`` lists the stems
    to use, e.g. a published DUTS-Single list.

    Every data info is ``dict(img_path, seg_map_path, img_id=<stem>,
    source='salient')``; load the mask with
    :class:`mmboxseg.datasets.transforms.LoadSalientMask`.

    Args:
        data_root (str): Root folder of the data set.
        img_dir (str): Image folder, relative to ``data_root`` unless
            absolute. Defaults to ``'DUTS-TR-Image'``.
        mask_dir (str): Mask folder, relative to ``data_root`` unless
            absolute. Defaults to ``'DUTS-TR-Mask'``.
        ann_file (str): Optional text file (relative to ``data_root``
            unless absolute) listing one image stem per line (a trailing
            image extension is ignored, blank lines are skipped). When
            given, only those stems are used, in that order, and every one
            must have an image and a mask. Defaults to ``''`` (all pairs of
            the folders, sorted by stem).
        single_object (bool): Keep only images with exactly one object (see
            above). Defaults to True.
        min_component_frac (float): A component smaller than this fraction
            of the mask's foreground is not an object. Defaults to 0.01.
        mask_thr (int): Mask values ``>= mask_thr`` are foreground.
            Defaults to 128.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`
            (``pipeline``, ``test_mode``, ``lazy_init``, ``indices``,
            ``serialize_data``, ``max_refetch``, ...).

    Raises:
        FileNotFoundError: A folder is missing, an image has no mask or a
            mask no image, or a stem of ``ann_file`` lacks either.
        ValueError: No image is left (naming ``data_root``).
    """

    METAINFO = dict(classes=('salient object', ))

    def __init__(self,
                 data_root: str,
                 img_dir: str = 'DUTS-TR-Image',
                 mask_dir: str = 'DUTS-TR-Mask',
                 ann_file: str = '',
                 single_object: bool = True,
                 min_component_frac: float = 0.01,
                 mask_thr: int = 128,
                 **kwargs) -> None:
        if not 0.0 <= min_component_frac < 1.0:
            raise ValueError('SalientDataset: min_component_frac must be in '
                             f'[0, 1), got {min_component_frac}')
        if not 0 < mask_thr <= 255:
            raise ValueError('SalientDataset: mask_thr must be in [1, 255], '
                             f'got {mask_thr}')
        self.img_dir = osp.join(data_root, img_dir)
        self.mask_dir = osp.join(data_root, mask_dir)
        self.single_object = single_object
        self.min_component_frac = min_component_frac
        self.mask_thr = mask_thr
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    # ------------------------------------------------------------------
    # pairing
    # ------------------------------------------------------------------
    def _scan(self) -> Tuple[Dict[str, str], Dict[str, str]]:
        """Map stem -> file name for the images and the masks."""
        for folder in (self.img_dir, self.mask_dir):
            if not osp.isdir(folder):
                raise FileNotFoundError(
                    f'SalientDataset: folder {folder} does not exist')
        images: Dict[str, str] = {}
        for name in sorted(os.listdir(self.img_dir)):
            stem, ext = osp.splitext(name)
            if ext.lower() not in IMG_EXTENSIONS:
                continue
            if stem in images:
                raise ValueError(
                    f'SalientDataset: {self.img_dir} holds several images '
                    f'of stem {stem!r}: {images[stem]} and {name}')
            images[stem] = name
        masks = {
            osp.splitext(name)[0]: name
            for name in sorted(os.listdir(self.mask_dir))
            if osp.splitext(name)[1].lower() == '.png'
        }
        return images, masks

    def _read_stem_list(self) -> List[Tuple[int, str]]:
        """``(line number, stem)`` of every non-blank line of ann_file."""
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'SalientDataset: stem list {self.ann_file} does not exist')
        entries, seen = [], {}
        with open(self.ann_file) as f:
            for line_no, line in enumerate(f, start=1):
                stem = line.strip()
                if not stem:
                    continue
                if osp.splitext(stem)[1].lower() in IMG_EXTENSIONS:
                    stem = osp.splitext(stem)[0]
                if stem in seen:
                    raise ValueError(
                        f'SalientDataset: {self.ann_file}: stem {stem!r} is '
                        f'listed on lines {seen[stem]} and {line_no}')
                seen[stem] = line_no
                entries.append((line_no, stem))
        return entries

    def _pairs(self) -> List[Tuple[str, str, str]]:
        """``(stem, img_path, seg_map_path)`` of every image to consider."""
        images, masks = self._scan()
        if self.ann_file:
            pairs = []
            alternatives = '|'.join(e[1:] for e in IMG_EXTENSIONS)
            for line_no, stem in self._read_stem_list():
                if stem not in images:
                    missing = osp.join(self.img_dir,
                                       f'{stem}.({alternatives})')
                elif stem not in masks:
                    missing = osp.join(self.mask_dir, f'{stem}.png')
                else:
                    pairs.append((stem, osp.join(self.img_dir, images[stem]),
                                  osp.join(self.mask_dir, masks[stem])))
                    continue
                raise FileNotFoundError(
                    f'SalientDataset: {self.ann_file}, line {line_no}: '
                    f'stem {stem!r} has no file {missing}')
            return pairs
        for stems, has, lacks in ((sorted(set(images) - set(masks)),
                                   self.img_dir, self.mask_dir),
                                  (sorted(set(masks) - set(images)),
                                   self.mask_dir, self.img_dir)):
            if stems:
                shown = ', '.join(stems[:5]) + (f' (and {len(stems) - 5} more)'
                                                if len(stems) > 5 else '')
                raise FileNotFoundError(
                    f'SalientDataset: {len(stems)} stems have a file in '
                    f'{has} but none in {lacks}: {shown}')
        return [(stem, osp.join(self.img_dir, images[stem]),
                 osp.join(self.mask_dir, masks[stem]))
                for stem in sorted(images)]

    # ------------------------------------------------------------------
    # single-object filter
    # ------------------------------------------------------------------
    def count_objects(self, mask_path: str) -> int:
        """Number of objects in a mask file (0 for an empty mask).

        The mask is binarised at ``mask_thr``; its 8-connected components
        of at least ``min_component_frac`` of the foreground area count.
        """
        mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise OSError(f'SalientDataset: cannot read mask {mask_path}')
        fg = (mask >= self.mask_thr).astype(np.uint8)
        total = int(fg.sum())
        if total == 0:
            return 0
        _, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]  # row 0 is the background
        return int((areas >= self.min_component_frac * total).sum())

    def load_data_list(self) -> List[dict]:
        pairs = self._pairs()
        num_multi = num_empty = 0
        data_list = []
        for stem, img_path, seg_map_path in pairs:
            if self.single_object:
                num = self.count_objects(seg_map_path)
                num_empty += num == 0
                num_multi += num > 1
                if num != 1:
                    continue
            data_list.append(
                dict(
                    img_path=img_path,
                    seg_map_path=seg_map_path,
                    img_id=stem,
                    source='salient'))
        filter_txt = (f', dropped {num_multi} as multi-object and '
                      f'{num_empty} as empty (min_component_frac='
                      f'{self.min_component_frac}, mask_thr={self.mask_thr})'
                      if self.single_object else ' (single_object=False)')
        print_log(
            f'SalientDataset: found {len(pairs)} image/mask pairs in '
            f'{self.data_root}, kept {len(data_list)}{filter_txt}',
            logger='current')
        if not data_list:
            reason = ('found no image/mask pair'
                      if not pairs else 'no image has a single-object mask')
            raise ValueError(f'SalientDataset: {reason} in {self.data_root} '
                             f'(images {self.img_dir}, masks '
                             f'{self.mask_dir}, stem list '
                             f'{self.ann_file or "none"})')
        return data_list

    def get_cat_ids(self, idx: int) -> List[int]:
        """The only category, ``0`` (class-agnostic)."""
        return [0]
