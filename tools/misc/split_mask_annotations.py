# Copyright (c) mmboxseg contributors. All rights reserved.
"""Keep masks for some classes only: make the annotation file of the
semi-supervised setting of BoxInst (paper Sec. 3.6, Tables 6 and 7).

    python tools/misc/split_mask_annotations.py IN.json OUT.json \
        --keep-masks-of voc        # the 20 Pascal VOC classes of COCO
    python tools/misc/split_mask_annotations.py IN.json OUT.json \
        --keep-masks-of nonvoc     # the other 60
    python tools/misc/split_mask_annotations.py IN.json OUT.json \
        --keep-masks-of person car # by category name

Annotations of the other classes lose their ``segmentation`` key; boxes
are untouched.  BoxCocoDataset loads such partial files.
"""
import argparse
import json
import sys

# COCO names of the 20 Pascal VOC classes
VOC_IN_COCO = ('airplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'dining table', 'dog', 'horse',
               'motorcycle', 'person', 'potted plant', 'sheep', 'couch',
               'train', 'tv')


def split_masks(content: dict, keep_names) -> dict:
    """Drop ``segmentation`` from annotations whose category is not kept.

    Args:
        content (dict): COCO annotation content (modified in place).
        keep_names (Iterable[str]): Category names that keep their masks.

    Returns:
        dict: ``content``.
    """
    names = {c['id']: c['name'] for c in content['categories']}
    unknown = set(keep_names) - set(names.values())
    if unknown:
        raise ValueError(
            f'--keep-masks-of: unknown categories {sorted(unknown)}; the '
            f'file has {sorted(names.values())}')
    keep_ids = {i for i, n in names.items() if n in set(keep_names)}
    for ann in content['annotations']:
        if ann['category_id'] not in keep_ids:
            ann.pop('segmentation', None)
    return content


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('in_file')
    parser.add_argument('out_file')
    parser.add_argument(
        '--keep-masks-of',
        nargs='+',
        required=True,
        help="'voc', 'nonvoc' or category names")
    args = parser.parse_args(argv)
    with open(args.in_file) as f:
        content = json.load(f)
    all_names = [c['name'] for c in content['categories']]
    if args.keep_masks_of == ['voc']:
        keep = [n for n in all_names if n in VOC_IN_COCO]
        if not keep:
            raise ValueError(f'{args.in_file}: no Pascal VOC class among '
                             f'the categories {all_names}')
    elif args.keep_masks_of == ['nonvoc']:
        keep = [n for n in all_names if n not in VOC_IN_COCO]
    else:
        keep = args.keep_masks_of
    split_masks(content, keep)
    with open(args.out_file, 'w') as f:
        json.dump(content, f)
    kept = sum('segmentation' in a for a in content['annotations'])
    print(f'{args.out_file}: {kept} of {len(content["annotations"])} '
          'annotations keep their masks')


if __name__ == '__main__':
    sys.exit(main())
