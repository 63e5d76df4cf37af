# Copyright (c) mmboxseg contributors. All rights reserved.
"""Instance segmentation demo: an image or a folder in, overlays out.

    python demo/image_demo.py INPUTS CONFIG --weights CKPT \
        [--out-dir outputs] [--device cpu] [--pred-score-thr 0.3] \
        [--batch-size 1] [--inference-with {teacher,student}] \
        [--no-save-pred] [--cfg-options KEY=VALUE ...]

INPUTS is an image file or a folder of images (not searched recursively).
CONFIG is any detector config of configs/ (BoxInst, BoxTeacher, SIM,
DiscoBox, BoxCaseg's Proxy Mask R-CNN, CondInst). The overlays go to
``<out-dir>/vis/<image stem>.png``, at the size of each input image, and,
unless ``--no-save-pred``, the predictions (boxes, scores, labels, RLE
masks) to ``<out-dir>/preds/<image stem>.json``.

It is mmdet's ``DetInferencer`` set up for mmboxseg
(:class:`mmboxseg.apis.inferencer.BoxSegInferencer`): mmboxseg's registry
scope, class names from the config when the checkpoint has none, and the
teacher/student choice of BoxTeacher, SIM and DiscoBox (``predict`` runs
the network named by the model's ``inference_with``: BoxTeacher's
teacher, SIM's and DiscoBox's student; ``--inference-with`` overrides
it). The BoxCaseg *segmenter* configs are crop-level and are refused:
use the Proxy Mask R-CNN config.

Example (toy data, after the BoxInst toy run)::

    python demo/image_demo.py data/toy/images/val \
        configs/boxinst/boxinst_r18_fpn_toy.py \
        --weights work_dirs/boxinst_r18_fpn_toy/iter_1500.pth --device cpu
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmdet.apis.det_inferencer import IMG_EXTENSIONS
from mmengine.config import Config, DictAction


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='mmboxseg instance segmentation demo')
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('model', help='config file of the detector')
    parser.add_argument('--weights', default=None, help='checkpoint file')
    parser.add_argument(
        '--out-dir', default='outputs', help='output directory')
    parser.add_argument(
        '--device',
        default=None,
        help='device, e.g. cpu or cuda:0 (default: cuda if available)')
    parser.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='draw predictions scoring at least this')
    parser.add_argument(
        '--batch-size', type=int, default=1, help='inference batch size')
    parser.add_argument(
        '--inference-with',
        choices=['teacher', 'student'],
        default=None,
        help='network of a teacher/student detector (BoxTeacher, SIM, '
        "DiscoBox) to run; default: the config's inference_with")
    parser.add_argument(
        '--palette',
        default='none',
        choices=['coco', 'voc', 'citys', 'random', 'none'],
        help="colour palette ('none': the config's)")
    parser.add_argument(
        '--show', action='store_true', help='display the overlays')
    parser.add_argument(
        '--no-save-vis', action='store_true', help='do not save overlays')
    parser.add_argument(
        '--no-save-pred',
        action='store_true',
        help='do not save the predictions as JSON')
    parser.add_argument(
        '--print-result', action='store_true', help='print the results')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    return args


def list_inputs(inputs: str) -> List[str]:
    """The image files of ``inputs`` (a file or a folder), sorted; raises
    ``FileNotFoundError`` for a missing path or an image-free folder."""
    if osp.isdir(inputs):
        files = sorted(
            osp.join(inputs, name) for name in os.listdir(inputs)
            if name.lower().endswith(IMG_EXTENSIONS)
            and osp.isfile(osp.join(inputs, name)))
        if not files:
            raise FileNotFoundError(
                f'no images ({", ".join(IMG_EXTENSIONS)}) in folder {inputs}')
        return files
    if not osp.isfile(inputs):
        raise FileNotFoundError(f'input {inputs} not found')
    return [inputs]


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the demo; returns the inferencer's result dict."""
    args = parse_args(argv)
    from mmboxseg.apis.inferencer import (BoxSegInferencer,
                                          check_detector_config,
                                          overlay_summary)
    from mmboxseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    files = list_inputs(args.inputs)
    if not osp.isfile(args.model):
        raise FileNotFoundError(f'config file {args.model} not found')
    cfg = Config.fromfile(args.model)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # before the checkpoint: a segmenter config is the error to report
    check_detector_config(cfg, args.model)
    if args.weights is not None and not osp.isfile(args.weights):
        raise FileNotFoundError(f'checkpoint {args.weights} not found')
    inferencer = BoxSegInferencer(
        model=cfg,
        weights=args.weights,
        device=args.device,
        palette=args.palette,
        inference_with=args.inference_with)
    results = inferencer(
        files,
        batch_size=args.batch_size,
        pred_score_thr=args.pred_score_thr,
        show=args.show,
        no_save_vis=args.no_save_vis,
        no_save_pred=args.no_save_pred,
        print_result=args.print_result,
        out_dir=args.out_dir)
    if not args.no_save_vis:
        print(f'{len(files)} overlay(s) written to '
              f'{osp.join(args.out_dir, "vis")}')
        for line in overlay_summary(files, results['predictions'],
                                    args.pred_score_thr):
            print(line)
    if not args.no_save_pred:
        print(f'predictions written to {osp.join(args.out_dir, "preds")}')
    return results


if __name__ == '__main__':
    main()
