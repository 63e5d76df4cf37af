# Copyright (c) mmboxseg contributors. All rights reserved.
import copy
import json
import logging
import math
import os.path as osp
from collections import Counter
from numbers import Number
from typing import List, Optional, Sequence, Union

from mmdet.datasets import CocoDataset
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmboxseg.registry import DATASETS


class AnnotationFileError(ValueError):
    """A COCO annotation file that cannot be used, with file and field."""


@DATASETS.register_module()
class BoxCocoDataset(CocoDataset):
    """COCO-format instance data set for box supervision.

    Differences from :class:`mmdet.datasets.CocoDataset`:

    - **Malformed files** raise :class:`AnnotationFileError` naming the file
      and the field (not a ``KeyError`` deep in the COCO API).
    - **Partial masks**: annotations may lack ``segmentation`` (box-only
      files have none at all).  Such an instance gets an empty mask, so a
      pipeline with ``LoadAnnotations(with_mask=True)`` loads (mmdet 3.3.0
      raises ``KeyError: 'mask'``) and mixed supervision trains it from its
      box.  Box-only pipelines (``with_mask=False``) never read masks.
    - **Bad boxes** are handled and counted in the log, never silently:
      boxes partly outside the image are clipped to it; boxes wholly outside
      it, or narrower or lower than ``min_box_size`` pixels (after
      clipping), are skipped; ``iscrowd`` boxes are kept as ignored
      instances (mmdet's convention: not trained on, not matched).
    - **Missing image files** raise ``FileNotFoundError`` naming the image
      and the annotation file when the data set is built (local files only;
      ``check_image_files=False`` turns the check off).
    - **Extra fields**: the annotation fields named in
      ``extra_instance_fields`` (e.g. BoxCaseg's ``proxy_box_agreement``)
      are copied into the instance dicts, for transforms such as
      :class:`~mmboxseg.datasets.transforms.LoadProxyAnnotations`; an
      annotation that lacks one raises :class:`AnnotationFileError`.

    Args:
        min_box_size (float): Minimum box width/height in pixels.
            Defaults to 1. Boxes with a negative width or height are
            malformed (:class:`AnnotationFileError`), not skipped.
        ann_file_hint (str, optional): How to make ``ann_file`` (e.g. the
            tool that writes it), added to the ``FileNotFoundError`` when
            it does not exist.
        check_image_files (bool): Check that every image file exists.
            Defaults to True.
        extra_instance_fields (Sequence[str]): Fields copied from each
            used annotation into its instance dict. Defaults to ().
        **kwargs: :class:`CocoDataset` arguments.
    """

    def __init__(self,
                 *args,
                 min_box_size: float = 1.0,
                 ann_file_hint: Optional[str] = None,
                 check_image_files: bool = True,
                 extra_instance_fields: Sequence[str] = (),
                 **kwargs) -> None:
        self.min_box_size = min_box_size
        self.ann_file_hint = ann_file_hint
        self.check_image_files = check_image_files
        if isinstance(extra_instance_fields, str):
            extra_instance_fields = (extra_instance_fields, )
        self.extra_instance_fields = tuple(extra_instance_fields)
        # id() of each annotation dict -> its index in the file, for errors
        self._ann_index = {}
        self.skip_counts = Counter()
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        self.skip_counts = Counter()
        if '://' not in self.ann_file and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'annotation file {self.ann_file} (ann_file of '
                f'{type(self).__name__}) does not exist' +
                (f'; {self.ann_file_hint}' if self.ann_file_hint else ''))
        with get_local_path(
                self.ann_file, backend_args=self.backend_args) as local_path:
            content = validate_coco_file(
                local_path, display_name=self.ann_file)
        # Same steps as CocoDataset.load_data_list, but the COCO index is
        # built from the validated content instead of parsing the file a
        # second time.
        self._ann_index = {
            id(ann): i
            for i, ann in enumerate(content['annotations'])
        }
        coco = self.COCOAPI()
        coco.dataset = content
        coco.createIndex()
        # mmdet's wrapper aliases these in __init__, before the index exists
        coco.img_ann_map, coco.cat_img_map = coco.imgToAnns, coco.catToImgs
        self.cat_ids = coco.get_cat_ids(cat_names=self.metainfo['classes'])
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(coco.cat_img_map)
        data_list = []
        for img_id in coco.get_img_ids():
            raw_img_info = coco.load_imgs([img_id])[0]
            raw_img_info['img_id'] = img_id
            raw_ann_info = coco.load_anns(coco.get_ann_ids(img_ids=[img_id]))
            data_list.append(
                self.parse_data_info(
                    dict(raw_ann_info=raw_ann_info,
                         raw_img_info=raw_img_info)))
        self._ann_index = {}
        ann_ids = [ann['id'] for ann in content['annotations']]
        if self.ANN_ID_UNIQUE and len(set(ann_ids)) != len(ann_ids):
            dup = [k for k, v in Counter(ann_ids).items() if v > 1][:5]
            raise AnnotationFileError(
                f'{self.ann_file}: field `annotations[].id`: ids are not '
                f'unique (e.g. {dup})')
        if self.check_image_files:
            self._check_image_files(data_list)
        self._log_summary(data_list)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        img_info = raw_data_info['raw_img_info']
        ann_info = raw_data_info['raw_ann_info']
        data_info = super().parse_data_info(
            dict(raw_img_info=img_info, raw_ann_info=[]))
        img_w, img_h = img_info['width'], img_info['height']
        instances = []
        counts = self.skip_counts
        for ann in ann_info:
            if ann.get('ignore', False):
                counts['ignore'] += 1
                continue
            if ann['category_id'] not in self.cat_ids:
                counts['other category'] += 1
                continue
            x1, y1, w, h = ann['bbox']
            if w < self.min_box_size or h < self.min_box_size:
                counts['degenerate'] += 1
                continue
            x2, y2 = x1 + w, y1 + h
            if x1 >= img_w or y1 >= img_h or x2 <= 0 or y2 <= 0:
                counts['outside image'] += 1
                continue
            cx1, cy1 = max(x1, 0), max(y1, 0)
            cx2, cy2 = min(x2, img_w), min(y2, img_h)
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                counts['clipped'] += 1
            if cx2 - cx1 < self.min_box_size or \
                    cy2 - cy1 < self.min_box_size:
                counts['degenerate'] += 1
                continue
            instance = dict(
                bbox=[cx1, cy1, cx2, cy2],
                bbox_label=self.cat2label[ann['category_id']],
                ignore_flag=int(bool(ann.get('iscrowd', False))))
            counts['crowd'] += instance['ignore_flag']
            if ann.get('segmentation'):
                instance['mask'] = ann['segmentation']
                counts['with mask'] += 1
            else:
                # an all-zero uncompressed RLE: "no mask, use the box"
                instance['mask'] = {
                    'size': [img_h, img_w],
                    'counts': [img_h * img_w]
                }
                counts['box only'] += 1
            for field in self.extra_instance_fields:
                if field not in ann:
                    where = (f'annotations[{self._ann_index.get(id(ann), "?")}'
                             f'] (id {ann["id"]})')
                    _fail(
                        self.ann_file, f'{where}.{field}',
                        'missing (named in extra_instance_fields of '
                        f'{type(self).__name__})')
                instance[field] = ann[field]
            instances.append(instance)
        if not instances:
            counts['images without boxes'] += 1
        data_info['instances'] = instances
        return data_info

    def _check_image_files(self, data_list: List[dict]) -> None:
        for info in data_list:
            path = info['img_path']
            if '://' in path:  # remote backends are not checked
                return
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'image file {path} (file_name of image id '
                    f'{info["img_id"]} in {self.ann_file}) does not exist')

    def _log_summary(self, data_list: List[dict]) -> None:
        c = self.skip_counts
        print_log(
            f'{type(self).__name__} {self.ann_file}: {len(data_list)} images,'
            f' {c["with mask"] + c["box only"]} instances '
            f'({c["with mask"]} with masks, {c["box only"]} box only, '
            f'{c["crowd"]} crowd/ignored); skipped {c["degenerate"]} '
            f'degenerate boxes (< {self.min_box_size} px), '
            f'{c["outside image"]} boxes outside the image, '
            f'{c["ignore"]} "ignore" annotations; clipped {c["clipped"]} '
            'boxes to the image; '
            f'{c["images without boxes"]} images without boxes' +
            (' (dropped in training: filter_empty_gt)'
             if self.filter_cfg and self.filter_cfg.get('filter_empty_gt')
             and not self.test_mode else ''),
            logger='current')
        if c['other category']:
            # a config for another dataset that forgot its ``metainfo``
            # silently loses classes; say so loudly
            print_log(
                f'{self.ann_file}: skipped {c["other category"]} annotations '
                'whose `category_id` is not among the dataset classes '
                f'({len(self.cat_ids)} of them); set `metainfo=dict(classes='
                '...)` in the dataset config if they should be used',
                logger='current',
                level=logging.WARNING)


def _fail(path: str, field: str, msg: str) -> None:
    raise AnnotationFileError(f'{path}: field `{field}`: {msg}')


def validate_coco_file(path: str, display_name: str = None) -> dict:
    """Check the structure of a COCO annotation file; return its content.

    Raises:
        AnnotationFileError: naming the file and the offending field.
    """
    name = display_name or path
    try:
        with open(path, encoding='utf-8') as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationFileError(
            f'{name}: not valid JSON ({e.msg} at line {e.lineno} column '
            f'{e.colno})') from e
    if not isinstance(content, dict):
        _fail(
            name, '<root>', 'expected a JSON object with images, '
            f'annotations and categories, got {type(content).__name__}')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(content.get(key), list):
            _fail(name, key, 'missing or not a list')
    image_ids = set()
    for i, img in enumerate(content['images']):
        for key in ('id', 'file_name', 'width', 'height'):
            if key not in img:
                _fail(name, f'images[{i}].{key}', 'missing')
        if not (isinstance(img['width'], Number) and img['width'] > 0
                and isinstance(img['height'], Number) and img['height'] > 0):
            _fail(
                name, f'images[{i}].width/height',
                f'must be positive numbers, got {img["width"]!r} x '
                f'{img["height"]!r}')
        image_ids.add(img['id'])
    category_ids = set()
    for i, cat in enumerate(content['categories']):
        for key in ('id', 'name'):
            if key not in cat:
                _fail(name, f'categories[{i}].{key}', 'missing')
        category_ids.add(cat['id'])
    for i, ann in enumerate(content['annotations']):
        where = f'annotations[{i}] (id {ann.get("id", "?")})'
        for key in ('id', 'image_id', 'category_id', 'bbox'):
            if key not in ann:
                _fail(name, f'{where}.{key}', 'missing')
        bbox = ann['bbox']
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
                isinstance(v, Number) and math.isfinite(v) for v in bbox)):
            _fail(name, f'{where}.bbox',
                  f'must be 4 finite numbers [x, y, w, h], got {bbox!r}')
        if bbox[2] < 0 or bbox[3] < 0:
            # not a small box but a broken one (x2 < x1 or y2 < y1 written
            # as [x1, y1, x2, y2]?): refuse instead of skipping it
            _fail(name, f'{where}.bbox',
                  f'negative width or height in [x, y, w, h] = {bbox!r}')
        if ann['image_id'] not in image_ids:
            _fail(name, f'{where}.image_id',
                  f'{ann["image_id"]!r} is not an id in `images`')
        if ann['category_id'] not in category_ids:
            _fail(name, f'{where}.category_id',
                  f'{ann["category_id"]!r} is not an id in `categories`')
        # the COCO API and mmdet read `area`; box-only files may omit it
        ann.setdefault('area', float(bbox[2]) * float(bbox[3]))
    return content
