# Copyright (c) mmboxseg contributors. All rights reserved.
"""mmdet's :class:`~mmdet.apis.DetInferencer` for mmboxseg configs.

What mmdet's inferencer needs to run an mmboxseg config, and what this
subclass adds:

- the registries: mmboxseg's registries are children of mmdet's, so the
  inferencer must build under the ``mmboxseg`` scope (the configs'
  ``default_scope``) after :func:`mmboxseg.utils.register_all_modules`;
  dicts inherited through ``mmdet::`` are re-scoped with
  :func:`mmboxseg.utils.adopt_mmboxseg_scope`;
- class names: a checkpoint without ``meta.dataset_meta`` (e.g. from
  ``tools/analysis_tools/init_checkpoint.py``) makes mmdet fall back to
  the 80 COCO names; here the config's test data set names the classes;
- teacher/student detectors (BoxTeacher, SIM, DiscoBox): their
  ``predict`` runs ``self.teacher`` when ``inference_with='teacher'``
  (BoxTeacher's default). A checkpoint whose teacher was never written by
  :class:`~mmboxseg.engine.hooks.EMATeacherHook` (``ema_updates == 0``)
  would predict with a randomly initialised teacher, so the student is
  used instead, with a warning, unless ``inference_with`` is given;
- the BoxCaseg *segmenter* configs: the segmenter segments one box crop
  at a time (stage 1 of BoxCaseg) and is not an image detector, so it is
  refused with an error that names the Proxy Mask R-CNN config to use;
- overlays are written as ``<out_dir>/vis/<image stem>.png`` (mmdet keeps
  the input's extension), at the input image's size.
"""
import copy
import os.path as osp
import warnings
from typing import List, Optional, Union

import mmcv
import numpy as np
from mmdet.apis import DetInferencer
from mmdet.evaluation import get_classes
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from mmboxseg.utils import adopt_mmboxseg_scope, register_all_modules

INFERENCE_MODELS = ('teacher', 'student')


def proxy_config_for(config_name: str) -> str:
    """The Proxy Mask R-CNN config (``configs/boxcaseg/``) that goes with a
    BoxCaseg segmenter config, judged by its file name."""
    name = osp.basename(config_name or '')
    if 'toy' in name:
        return 'configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py'
    if 'voc' in name:
        return 'configs/boxcaseg/proxy_mask-rcnn_r50_fpn_voc-aug.py'
    return 'configs/boxcaseg/proxy_mask-rcnn_r50_fpn_coco.py'


def check_detector_config(cfg: Config, config_name: str = '') -> None:
    """Raise a ``ValueError`` for configs whose model is not an image
    detector (the BoxCaseg segmenter).

    Args:
        cfg (Config): The loaded config.
        config_name (str): Its file, for the message.
    """
    from mmboxseg.models.detectors import BoxCasegSegmenter
    from mmboxseg.registry import MODELS
    model_type = cfg.model.get('type') if 'model' in cfg else None
    model_cls = MODELS.get(model_type) if isinstance(model_type,
                                                     str) else model_type
    if isinstance(model_cls, type) and issubclass(model_cls,
                                                  BoxCasegSegmenter):
        name = config_name or 'this config'
        raise ValueError(
            f'{name} is a BoxCaseg segmenter config (stage 1): it segments '
            'one box crop at a time and is not an image detector, so it '
            'cannot run on whole images. It is used by '
            'tools/boxcaseg/generate_proxy_masks.py to write proxy masks; '
            'run the demo with the Proxy Mask R-CNN config trained on them '
            f'instead, e.g. {proxy_config_for(config_name)} and its '
            'checkpoint.')


class BoxSegInferencer(DetInferencer):
    """:class:`mmdet.apis.DetInferencer` for mmboxseg's detectors
    (BoxInst, BoxTeacher, SIM, DiscoBox, BoxCaseg's Proxy Mask R-CNN, and
    mmdet configs).

    Args:
        model (str | Config): Config file or loaded config.
        weights (str, optional): Checkpoint. None runs a randomly
            initialised model (with mmdet's warning).
        device (str, optional): Device; None picks one as mmdet does.
        scope (str): Registry scope when the config sets no
            ``default_scope``. Defaults to ``'mmboxseg'``.
        palette (str): As mmdet's (``'none'``: the config's, then the
            checkpoint's).
        show_progress (bool): Show a progress bar.
        inference_with (str, optional): ``'teacher'`` or ``'student'``:
            overrides the detector's ``inference_with`` (teacher/student
            detectors only). None keeps the config's, except that a
            teacher never written by the EMA hook is replaced by the
            student (see the module docstring).
        cfg_options (dict, optional): Merged into the config.
    """

    def __init__(self,
                 model: Union[str, Config],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 scope: str = 'mmboxseg',
                 palette: str = 'none',
                 show_progress: bool = True,
                 inference_with: Optional[str] = None,
                 cfg_options: Optional[dict] = None) -> None:
        register_all_modules(init_default_scope=False)
        config_name = ''
        if isinstance(model, str):
            if not osp.isfile(model):
                raise FileNotFoundError(f'config file {model} not found')
            config_name = model
            cfg = Config.fromfile(model)
        elif isinstance(model, (Config, ConfigDict)):
            cfg = copy.deepcopy(model)
            config_name = getattr(cfg, 'filename', '') or ''
        else:
            raise TypeError('model must be a config file or a Config, got '
                            f'{type(model).__name__}')
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        check_detector_config(cfg, config_name)
        if weights is not None and not osp.isfile(weights):
            raise FileNotFoundError(f'checkpoint {weights} not found')
        if inference_with is not None and \
                inference_with not in INFERENCE_MODELS:
            raise ValueError(f'inference_with must be one of '
                             f'{INFERENCE_MODELS}, got {inference_with!r}')
        adopt_mmboxseg_scope(cfg)
        if cfg.get('visualizer') is not None:
            # overlays are written by out_file, not through vis backends
            # (a LocalVisBackend without save_dir only warns)
            cfg.visualizer['vis_backends'] = []
        self._inference_with = inference_with
        super().__init__(
            model=cfg,
            weights=weights,
            device=device,
            scope=cfg.get('default_scope') or scope,
            palette=palette,
            show_progress=show_progress)

    # -- model ----------------------------------------------------------------
    def _config_metainfo(self, cfg: Config) -> dict:
        """The test data set's metainfo (lazily built: only the names)."""
        from mmboxseg.registry import DATASETS
        dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
        dataset_cfg['lazy_init'] = True
        return dict(DATASETS.build(dataset_cfg).metainfo)

    def _load_weights_to_model(self, model, checkpoint: Optional[dict],
                               cfg: Optional[Config]) -> None:
        """Weights and ``dataset_meta``: the checkpoint's meta, else the
        config's test data set (mmdet: the COCO names); then the
        teacher/student choice."""
        metainfo = None
        if checkpoint is not None:
            _load_checkpoint_to_model(model, checkpoint)
            meta = checkpoint.get('meta') or {}
            if 'dataset_meta' in meta:
                metainfo = {
                    k.lower(): v
                    for k, v in meta['dataset_meta'].items()
                }
            elif 'CLASSES' in meta:
                metainfo = dict(classes=meta['CLASSES'])
        else:
            warnings.warn('No checkpoint given: the predictions come from a '
                          'randomly initialised model.')
        config_meta = self._config_metainfo(cfg) if cfg is not None else {}
        if metainfo is None:
            if 'classes' in config_meta:
                metainfo = dict(classes=config_meta['classes'])
            else:
                warnings.warn('Neither the checkpoint nor the config names '
                              'the classes; using the COCO names.')
                metainfo = dict(classes=get_classes('coco'))
        model.dataset_meta = metainfo
        # palette priority as mmdet: --palette, config, checkpoint
        if self.palette != 'none':
            model.dataset_meta['palette'] = self.palette
        elif config_meta.get('palette') is not None:
            model.dataset_meta['palette'] = config_meta['palette']
        elif 'palette' not in model.dataset_meta:
            model.dataset_meta['palette'] = 'random'
        self._choose_inference_network(model)

    def _choose_inference_network(self, model) -> None:
        """Set ``inference_with`` of a teacher/student detector."""
        if not hasattr(model, 'inference_with'):
            if self._inference_with is not None:
                warnings.warn(f'{type(model).__name__} has a single network; '
                              'inference_with is ignored')
            return
        if self._inference_with is not None:
            model.inference_with = self._inference_with
        elif model.inference_with == 'teacher' and int(
                getattr(model, 'ema_updates', 1)) == 0:
            warnings.warn(
                f'{type(model).__name__} infers with its EMA teacher, but the '
                'checkpoint\'s teacher was never updated from the student '
                '(ema_updates == 0, e.g. an initial checkpoint): running '
                "the student instead. Pass inference_with='teacher' to force "
                'the teacher.')
            model.inference_with = 'student'
        if model.inference_with == 'teacher' and int(
                getattr(model, 'ema_updates', 1)) == 0:
            warnings.warn('inference with a teacher that was never updated '
                          'from the student (ema_updates == 0)')

    def _init_collate(self, cfg: Config):
        """``pseudo_collate`` unless the test loader names a collate
        function (mmboxseg has no function registry of its own, so the
        base class would warn on every run)."""
        if cfg.test_dataloader.get('collate_fn') is None:
            return pseudo_collate
        return super()._init_collate(cfg)

    # -- output -----------------------------------------------------------
    def visualize(self,
                  inputs: list,
                  preds: list,
                  return_vis: bool = False,
                  show: bool = False,
                  wait_time: int = 0,
                  draw_pred: bool = True,
                  pred_score_thr: float = 0.3,
                  no_save_vis: bool = False,
                  img_out_dir: str = '',
                  **kwargs) -> Optional[List[np.ndarray]]:
        """mmdet's overlays, saved as ``<img_out_dir>/vis/<stem>.png``
        (``<index>.png`` for array inputs) at the input's size."""
        out_dir = '' if no_save_vis else img_out_dir
        first = self.num_visualized_imgs
        vis = super().visualize(
            inputs,
            preds,
            return_vis=True if out_dir else return_vis,
            show=show,
            wait_time=wait_time,
            draw_pred=draw_pred,
            pred_score_thr=pred_score_thr,
            no_save_vis=True,
            img_out_dir='',
            **kwargs)
        if out_dir and vis is not None:
            for i, (single_input, image) in enumerate(zip(inputs, vis)):
                if isinstance(single_input, str):
                    stem = osp.splitext(osp.basename(single_input))[0]
                else:
                    stem = str(first + i).zfill(8)
                mmcv.imwrite(image[..., ::-1],
                             osp.join(out_dir, 'vis', stem + '.png'))
        return vis if return_vis else None


def overlay_summary(files: List[str], predictions: List[dict],
                    pred_score_thr: float) -> List[str]:
    """Lines that say what the overlays show: the number of instances drawn
    (score >= ``pred_score_thr``, as mmdet's visualiser draws them), and for
    every image where nothing passes, that its overlay is the bare image,
    with the best score it had.

    Args:
        files (list[str]): The input images, in order.
        predictions (list[dict]): ``BoxSegInferencer(...)['predictions']``
            (each with a ``scores`` list).
        pred_score_thr (float): The threshold the overlays were drawn at.
    """
    lines = []
    drawn = 0
    for path, pred in zip(files, predictions):
        scores = np.asarray(pred.get('scores', []), dtype=np.float64)
        kept = int((scores >= pred_score_thr).sum())
        drawn += kept
        if kept == 0:
            best = (f'best score {scores.max():.3f}'
                    if scores.size else 'no prediction at all')
            lines.append(f'{path}: nothing drawn, no instance scores >= '
                         f'{pred_score_thr} ({best}); lower '
                         '--pred-score-thr to see more')
    lines.insert(
        0, f'{drawn} instance(s) drawn over {len(files)} image(s) at '
        f'score >= {pred_score_thr}')
    return lines
