# Copyright (c) mmboxseg contributors. All rights reserved.
"""Evaluate the "box baseline": a detector's own boxes pasted as masks.

A box-supervised segmenter is only useful if its masks beat filled boxes.
Dump the predictions of a model with ``tools/test.py ... --out preds.pkl``
and run

    python tools/analysis_tools/eval_box_baseline.py CONFIG preds.pkl

It replaces every predicted mask by its filled box (pixels whose centre
lies in the box) and evaluates bbox and segm AP against the config's test
annotations. Prints the metrics as one JSON line.
"""
import argparse
import json

import numpy as np
from mmengine.config import Config


def box_masks(bboxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[N, H, W]`` bool masks of pixels whose centre lies in each box.

    Args:
        bboxes (np.ndarray): ``[N, 4]`` (x1, y1, x2, y2) in pixels.
    """
    ys = np.arange(height)[None, :, None] + 0.5
    xs = np.arange(width)[None, None, :] + 0.5
    b = bboxes[:, :, None, None]
    return (ys >= b[:, 1]) & (ys < b[:, 3]) & (xs >= b[:, 0]) & \
        (xs < b[:, 2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('predictions', help='pickle from tools/test.py --out')
    parser.add_argument(
        '--ann-file', help='defaults to the test evaluator ann_file')
    args = parser.parse_args(argv)

    from mmdet.evaluation import CocoMetric
    from mmdet.structures.mask import encode_mask_results

    from mmboxseg.utils import load_safe_pickle

    cfg = Config.fromfile(args.config)
    ann_file = args.ann_file or cfg.test_evaluator.ann_file
    # an allow-list unpickler: a crafted predictions file cannot run code
    results = load_safe_pickle(args.predictions)
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(
        classes=cfg.test_dataloader.dataset.metainfo['classes'])
    for result in results:
        pred = result['pred_instances']
        bboxes = np.asarray(pred['bboxes'], dtype=np.float64).reshape(-1, 4)
        height, width = result['ori_shape'][:2]
        pred['masks'] = encode_mask_results(box_masks(bboxes, height, width))
        metric.process({}, [result])
    metrics = metric.evaluate(size=len(results))
    print(json.dumps({k: round(float(v), 4) for k, v in metrics.items()}))


if __name__ == '__main__':
    main()
