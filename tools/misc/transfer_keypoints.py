"""Dense correspondence / keypoint transfer between two images with a
DiscoBox model (mmboxseg.apis.dense_correspondence).

Prints the transferred keypoints (or the strongest dense matches) as JSON
and, with ``--out``, draws them on the two images side by side.

Example::

    python tools/misc/transfer_keypoints.py \
        configs/discobox/discobox_solov2_r18_fpn_toy.py \
        work_dirs/discobox_solov2_r18_fpn_toy/iter_1500.pth \
        data/toy_pairs/images/000000_a.png data/toy_pairs/images/000000_b.png \
        --keypoints 40,50 60,70 --out matches.png
"""
import argparse
import json

import mmcv
import numpy as np


def parse_point(text):
    try:
        x, y = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'keypoint {text!r}: expected x,y') from None
    return [x, y]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image_a')
    parser.add_argument('image_b')
    parser.add_argument(
        '--box-a',
        type=float,
        nargs=4,
        metavar=('X1', 'Y1', 'X2', 'Y2'),
        help='object box in image A (default: top detection, else the '
        'whole image)')
    parser.add_argument(
        '--box-b', type=float, nargs=4, metavar=('X1', 'Y1', 'X2', 'Y2'))
    parser.add_argument(
        '--keypoints',
        type=parse_point,
        nargs='*',
        default=None,
        help='x,y points of image A to transfer (default: the --top dense '
        'matches)')
    parser.add_argument(
        '--top',
        type=int,
        default=20,
        help='dense matches printed without --keypoints')
    parser.add_argument('--grid', type=int, default=None)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', help='image file for the drawing')
    return parser.parse_args(argv)


def draw(img_a, img_b, points_a, points_b, path):
    import cv2
    h = max(img_a.shape[0], img_b.shape[0])
    canvas = np.zeros((h, img_a.shape[1] + img_b.shape[1], 3), np.uint8)
    canvas[:img_a.shape[0], :img_a.shape[1]] = img_a
    canvas[:img_b.shape[0], img_a.shape[1]:] = img_b
    rng = np.random.default_rng(0)
    for pa, pb in zip(points_a, points_b):
        colour = tuple(int(c) for c in rng.integers(64, 256, 3))
        a = (int(round(pa[0])), int(round(pa[1])))
        b = (int(round(pb[0])) + img_a.shape[1], int(round(pb[1])))
        cv2.circle(canvas, a, 2, colour, -1)
        cv2.circle(canvas, b, 2, colour, -1)
        cv2.line(canvas, a, b, colour, 1)
    mmcv.imwrite(canvas, path)


def main(argv=None):
    args = parse_args(argv)
    from mmdet.apis import init_detector

    from mmboxseg.apis import dense_correspondence
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    model = init_detector(args.config, args.checkpoint, device=args.device)
    out = dense_correspondence(model, args.image_a, args.image_b, args.box_a,
                               args.box_b, args.grid)
    if args.keypoints:
        from mmboxseg.apis import transfer_keypoints
        points_a = np.asarray(args.keypoints, np.float32)
        points_b = transfer_keypoints(
            model, args.image_a, args.image_b, points_a, correspondence=out)
        result = dict(
            keypoints_a=points_a.tolist(),
            keypoints_b=points_b.round(2).tolist())
    else:
        order = np.argsort(-out['scores'])[:args.top]
        points_a, points_b = out['points_a'][order], out['points_b'][order]
        result = dict(
            points_a=points_a.round(2).tolist(),
            points_b=points_b.round(2).tolist(),
            scores=out['scores'][order].round(4).tolist())
    result.update(
        box_a=out['box_a'].round(2).tolist(),
        box_b=out['box_b'].round(2).tolist())
    print(json.dumps(result))
    if args.out:
        draw(
            mmcv.imread(args.image_a), mmcv.imread(args.image_b), points_a,
            points_b, args.out)
        print(f'drawing written to {args.out}')
    return result


if __name__ == '__main__':
    main()
