"""Remove the images of PF-PASCAL pair lists from a COCO-format VOC
training file (DiscoBox Sec. 4.4; release
tools/get_voctraining_excluding_pfpascaltesting.py), so that a model
evaluated on PF-PASCAL never trained on its validation or test images.
The logic is
mmboxseg.datasets.pf_pascal_pair_dataset.exclude_pair_images.

Example (the output is the train file of
configs/discobox/discobox_solov2_r50_fpn_pf-pascal.py)::

    python tools/misc/exclude_pf_pascal_images.py \
        data/voc/annotations/voc_2012_train_aug_cocofmt.json \
        data/PF-PASCAL/val_pairs.csv data/PF-PASCAL/test_pairs.csv \
        --out data/voc/annotations/voc_2012_train_aug_excluding_pfpascal.json
"""
import argparse
import json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('voc_ann', help='COCO-format VOC training file')
    parser.add_argument(
        'pairs', nargs='+', help='PF-PASCAL pair CSVs (validation, test)')
    parser.add_argument('--out', required=True, help='output JSON')
    return parser.parse_args(argv)


def main(argv=None):
    from mmboxseg.datasets.pf_pascal_pair_dataset import exclude_pair_images
    args = parse_args(argv)
    with open(args.voc_ann) as f:
        coco = json.load(f)
    out, removed = exclude_pair_images(coco, args.pairs)
    with open(args.out, 'w') as f:
        json.dump(out, f)
    print(f'{args.out}: {len(out["images"])} images, '
          f'{len(out["annotations"])} annotations ({removed} images of '
          f'{len(args.pairs)} pair list(s) removed)')
    return removed


if __name__ == '__main__':
    main()
