# Copyright (c) mmboxseg contributors. All rights reserved.
"""Draw what a box-supervised model is trained with, image by image.

    python tools/analysis_tools/browse_dataset.py CONFIG \
        [--checkpoint CKPT] [--output-dir outputs/browse_dataset] \
        [--num-images 10] [--batch-size 1] [--color-thresh 0.3] \
        [--scale S] [--seed 0] [--device cpu] [--pred-score-thr 0.3] \
        [--cfg-options KEY=VALUE ...]

The first ``--num-images`` images of the config's training set go through
its train pipeline (resize, flip, BoxTeacher's two views, ...) and the
model's data preprocessor, exactly as in training. For each image one PNG,
``<output-dir>/<image stem>.png``, shows side by side:

1. **image + boxes**: the image the network sees, with its boxes (for
   BoxTeacher the student view, colour-augmented; the teacher view, from
   which the colour similarity is computed, is an extra panel);
2. **box masks**: ``gt_instances.box_masks``, the ``[G, H/s, W/s]`` box
   masks of :class:`~mmboxseg.models.data_preprocessors.
   BoxSupDataPreprocessor` (cell ``(i, j)`` samples input pixel
   ``(s j + s // 2, s i + s // 2)``; ``s = mask_stride``, 4), each cell
   drawn as an ``s x s`` block (nearest up-sampling), over the box outline
   (white where the sampling misses the box's edge);
3. **affinity edges**: for BoxInst, BoxTeacher and SIM, per cell, how many
   of its ``k*k - 1`` dilated neighbours have a colour similarity
   ``S_e >= thr`` (``pairwise_color_thresh`` of the mask head, 0.3), as a
   heat map from 0 (dark) to ``k*k - 1`` (yellow). Only cells inside a
   box train the pairwise term (BoxInst Eq. 8); cells outside every box
   are dimmed, padding and removed bottom rows are black. A box whose
   object shares its background's colours (camouflage) shows many
   passing edges across the object's border; a textured object shows
   few edges inside. DiscoBox does not threshold the colour similarity:
   its mean-field pairwise kernel (``contrast_sensitive_kernel``, the
   release's normalised-RGB Gaussian) is drawn instead, as the mean weight
   of a cell's neighbours divided by ``alpha0`` (0 to 1);
4. with ``--checkpoint``: **pseudo masks**, the method's own, from one
   training forward (``model.loss`` under ``torch.no_grad``, model in
   training mode) on the batch, read from ``model.last_pseudo_masks``
   (BoxTeacher, SIM, DiscoBox; on the box masks' grid) and drawn like the
   box masks; boxes without a pseudo mask show their outline only. For
   other models (BoxInst) there are no pseudo masks: the model's
   **predicted masks** (eval mode, scores >= ``--pred-score-thr``) are
   drawn instead, and the panel says so.

Below the panels, a line of statistics per image (cells per box, edges
per box cell, cells without any passing edge, pseudo-mask fill) and notes
on what the forward did; the same is printed.

How each method's pseudo masks are obtained here (state changes stay in
this process, the checkpoint is never written):

- the teacher (BoxTeacher, SIM's momentum encoder, DiscoBox) of a
  checkpoint that ``EMATeacherHook`` never updated (``ema_updates == 0``,
  e.g. ``init_checkpoint.py``) is set to the student, as the hook does at
  iteration 0;
- BoxTeacher computes pseudo masks at every step; its pseudo losses are
  ramped up over ``pseudo_warmup_iters`` (the note gives the weight at
  the checkpoint's step). SIM computes them from the first step; its
  pseudo losses start after ``pseudo_start_iters``. SIM's copy-paste is
  switched off (it pastes from the memory bank that ``MemoryBankHook``
  fills during training);
- DiscoBox only labels pseudo masks while its self-consistency gate is
  open (MIL running loss below ``ts_thresh``, or ``ts_start_iter``): the
  gate is forced open for this forward (the note says whether it was open
  at the checkpoint) and the correspondence branch, which needs the
  training memory bank, is off. Before ``teacher_start_iter`` DiscoBox's
  teacher is the student's own detached prediction, as in training.
  ``with_mean_field=False`` configs have no pseudo masks.

Each batch's forward starts from the checkpoint's state (the forward
moves step counters, gates and BN statistics in memory, as a training
step would); nothing is saved.
"""
import argparse
import colorsys
import copy
import os
import os.path as osp
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

# the panels' background and text colours; instance colours are never grey,
# so a pixel with R == G == B is never part of a drawn mask
WHITE = (255, 255, 255)
HEADER = (40, 40, 40)
DIM = 0.4
HEADER_H = 18
GAP = 4
LINE_H = 15
PANEL_SIDE = 256


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the box supervision (box masks, colour-affinity '
        'edges, pseudo masks) of a config\'s training images')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--checkpoint',
        default=None,
        help='checkpoint: adds the pseudo masks (or predicted masks)')
    parser.add_argument(
        '--output-dir',
        default='outputs/browse_dataset',
        help='where the PNGs go')
    parser.add_argument(
        '--num-images', type=int, default=10, help='images to draw')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=1,
        help='images per forward (padding and BN statistics are per batch)')
    parser.add_argument(
        '--color-thresh',
        type=float,
        default=None,
        help="colour-similarity threshold (default: the mask head's "
        'pairwise_color_thresh, else 0.3)')
    parser.add_argument(
        '--scale',
        type=int,
        default=None,
        help='integer up-scaling of the panels (default: up to 256 px)')
    parser.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='score threshold of predicted masks')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the augmentations')
    parser.add_argument('--device', default='cpu', help='device')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.batch_size < 1:
        parser.error('--num-images and --batch-size must be >= 1')
    if args.scale is not None and args.scale < 1:
        parser.error('--scale must be >= 1')
    return args


# -- model and data ---------------------------------------------------------
def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """The config with ``cfg_options`` merged, mmdet dicts re-scoped and
    SIM's copy-paste off (it needs the training memory bank)."""
    from mmboxseg.utils import adopt_mmboxseg_scope, register_all_modules
    register_all_modules(init_default_scope=False)
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} not found')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    adopt_mmboxseg_scope(cfg)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if preprocessor.get('copy_paste') is not None:
        preprocessor['copy_paste'] = None
    return cfg


def model_class(cfg: Config) -> type:
    from mmboxseg.registry import MODELS
    model_type = cfg.model.get('type')
    return MODELS.get(model_type) if isinstance(model_type,
                                                str) else model_type


def check_box_supervised(cfg: Config, config_name: str = '') -> None:
    """Raise ``ValueError`` unless the model is trained with
    :class:`BoxSupDataPreprocessor` targets."""
    from mmboxseg.models.data_preprocessors import BoxSupDataPreprocessor
    from mmboxseg.models.detectors import BoxCasegSegmenter
    from mmboxseg.registry import MODELS
    name = config_name or 'the config'
    cls = model_class(cfg)
    if isinstance(cls, type) and issubclass(cls, BoxCasegSegmenter):
        raise ValueError(
            f'{name} is a BoxCaseg segmenter config: it trains on box crops '
            'and salient images, not on box masks and colour affinity; '
            'browse_dataset.py draws the BoxInst-family supervision '
            '(BoxInst, BoxTeacher, SIM, DiscoBox configs)')
    pre = cfg.model.get('data_preprocessor') or {}
    pre_type = pre.get('type')
    pre_cls = MODELS.get(pre_type) if isinstance(pre_type, str) else pre_type
    if not (isinstance(pre_cls, type)
            and issubclass(pre_cls, BoxSupDataPreprocessor)):
        raise ValueError(
            f'{name} uses data_preprocessor {pre_type!r}, which computes no '
            'box masks or colour similarity: its model is not trained with '
            'BoxInst-style box supervision. Use a BoxInst, BoxTeacher, SIM '
            'or DiscoBox config')


def is_discobox(cfg_or_model) -> bool:
    from mmboxseg.models.detectors import DiscoBox
    if isinstance(cfg_or_model, Config):
        cls = model_class(cfg_or_model)
        return isinstance(cls, type) and issubclass(cls, DiscoBox)
    return isinstance(cfg_or_model, DiscoBox)


def has_pseudo_masks(model) -> bool:
    """BoxTeacher, SIM and DiscoBox keep ``last_pseudo_masks``."""
    from mmboxseg.models.detectors import SIM, BoxTeacher, DiscoBox
    return isinstance(model, (BoxTeacher, SIM, DiscoBox))


def build_model(
        cfg: Config,
        checkpoint: Optional[str],
        device: str = 'cpu'
) -> Tuple[torch.nn.Module, Optional[torch.nn.Module]]:
    """``(data_preprocessor, model)``; the model only with a checkpoint."""
    from mmengine.runner import load_checkpoint

    from mmboxseg.registry import MODELS
    if checkpoint is None:
        return MODELS.build(cfg.model.data_preprocessor).to(device), None
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
    model.to(device)
    return model.data_preprocessor, model


def mean_field_settings(cfg: Config, model=None) -> dict:
    """DiscoBox's mean-field kernel settings (model's, else config's)."""
    if model is not None:
        return dict(model.mask_head.mean_field_cfg)
    from mmboxseg.models.dense_heads.discobox_solov2_head import \
        MEAN_FIELD_DEFAULTS
    given = cfg.model.mask_head.get('mean_field') or {}
    return {**MEAN_FIELD_DEFAULTS, **given}


def color_threshold(cfg: Config, given: Optional[float] = None) -> float:
    if given is not None:
        return float(given)
    return float(
        cfg.model.get('mask_head', {}).get('pairwise_color_thresh', 0.3))


# -- supervision -----------------------------------------------------------
def edge_counts(similarity: torch.Tensor, thr: float) -> torch.Tensor:
    """Per cell, the neighbours with ``S_e >= thr``: ``[K, h, w]`` ->
    ``[h, w]`` (the edges ``colour_edges`` of
    :meth:`BoxSupMaskHead.loss_by_feat` keeps)."""
    return (similarity >= thr).sum(dim=0)


def mean_field_affinity(inputs: torch.Tensor, image_valid: torch.Tensor,
                        settings: dict) -> torch.Tensor:
    """DiscoBox's mean-field pairwise weights as in its loss: the
    normalised batch resized to the mask grid (bilinear,
    ``align_corners=True``), :func:`contrast_sensitive_kernel`, the mean
    over the ``k*k - 1`` neighbours divided by ``alpha0``.

    Args:
        inputs (Tensor): ``[B, 3, H, W]`` normalised padded batch.
        image_valid (Tensor): ``[B, h, w]`` bool.
        settings (dict): Mean-field settings.

    Returns:
        Tensor: ``[B, h, w]`` in ``[0, 1]``.
    """
    from mmboxseg.models.utils import contrast_sensitive_kernel
    k = settings['kernel_size']
    images = F.interpolate(
        inputs.float(),
        image_valid.shape[-2:],
        mode='bilinear',
        align_corners=True)
    weights = contrast_sensitive_kernel(images, k, settings['alpha0'],
                                        settings['theta0'], settings['theta1'],
                                        image_valid)
    centre = (k * k) // 2
    neighbours = torch.cat([weights[:, :centre], weights[:, centre + 1:]], 1)
    return neighbours.mean(dim=1) / settings['alpha0']


def bgr_tensor_to_rgb(img: torch.Tensor, channel_order: str) -> np.ndarray:
    """``[3, h, w]`` raw pipeline image to ``[h, w, 3]`` uint8 RGB."""
    arr = img.detach().cpu().numpy().transpose(1, 2, 0)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr[..., ::-1].copy() if channel_order == 'bgr' else arr.copy()


def split_views(data: dict, raw_inputs) -> tuple:
    """``(inputs, samples, raw, teacher_raw)`` of the view shown: the
    student's for two-view (BoxTeacher) batches."""
    if isinstance(data['inputs'], dict):
        views = list(data['inputs'])
        student = 'student' if 'student' in views else views[-1]
        teacher = 'teacher' if 'teacher' in views else views[0]
        return (data['inputs'][student], data['data_samples'][student],
                raw_inputs[student], raw_inputs[teacher])
    return data['inputs'], data['data_samples'], raw_inputs, None


def base_records(data: dict, raw_inputs, preprocessor, thr: float,
                 mean_field: Optional[dict]) -> List[dict]:
    """One record per image of a preprocessed batch: what the
    preprocessor attached, as numpy arrays."""
    from mmdet.structures.bbox import get_box_tensor
    inputs, samples, raw, teacher_raw = split_views(data, raw_inputs)
    order = preprocessor.raw_channel_order
    affinity = None
    if mean_field is not None:
        valid = torch.stack([s.image_valid for s in samples])
        affinity = mean_field_affinity(inputs, valid, mean_field)
    records = []
    for i, sample in enumerate(samples):
        gt = sample.gt_instances
        image = sample.get('raw_image', raw[i])
        record = dict(
            img_path=sample.get('img_path', f'image_{i}'),
            image=bgr_tensor_to_rgb(image, order),
            teacher_image=None if teacher_raw is None else bgr_tensor_to_rgb(
                teacher_raw[i], order),
            boxes=get_box_tensor(gt.bboxes).detach().cpu().numpy().reshape(
                -1, 4),
            labels=gt.labels.detach().cpu().numpy(),
            box_masks=gt.box_masks.detach().cpu().numpy().astype(bool),
            image_valid=sample.image_valid.detach().cpu().numpy().astype(bool),
            stride=preprocessor.mask_stride,
            thr=thr,
            num_neighbours=int(sample.color_similarity.shape[0]),
            edge_counts=None,
            affinity=None,
            pseudo=None,
            prediction=None,
            notes=[])
        if affinity is None:
            record['edge_counts'] = edge_counts(sample.color_similarity,
                                                thr).cpu().numpy()
        else:
            record['affinity'] = affinity[i].cpu().numpy()
        records.append(record)
    return records


def ensure_teacher(model) -> Optional[str]:
    """Set a never-updated teacher to the student (what EMATeacherHook
    does at iteration 0); returns a note when it did."""
    from mmboxseg.engine.hooks import ema_update_, paired_tensors
    if not hasattr(model, 'teacher') or int(model.ema_updates) > 0:
        return None
    ema_update_(paired_tensors(model.teacher, model), 0.0, 'copy')
    model.ema_updates.fill_(1)
    return (f'{type(model).__name__}: the checkpoint\'s teacher was never '
            'updated (ema_updates == 0); set to the student, as '
            'EMATeacherHook does at iteration 0')


def pseudo_mask_forward(model, data: dict) -> Tuple[List[dict], List[str]]:
    """One training forward (no gradients) that fills
    ``model.last_pseudo_masks``; returns its records and notes."""
    from mmboxseg.models.detectors import SIM, BoxTeacher, DiscoBox
    notes = []
    note = ensure_teacher(model)
    if note:
        notes.append(note)
    restore = None
    if isinstance(model, BoxTeacher):
        head = model.mask_head
        cfg = model.pseudo_cfg
        notes.append(
            f'BoxTeacher: teacher masks > {cfg["mask_thr"]} inside boxes '
            f'matched at IoU >= {cfg["iou_thr"]}; pseudo-loss weight at '
            f'step {int(head._iter)}: {head.pseudo_warmup():.2f} (warm-up '
            f'{head.pseudo_warmup_iters} steps)')
    elif isinstance(model, SIM):
        head = model.mask_head
        state = 'on' if head.pseudo_active() else \
            f'off until step {head.pseudo_start_iters}'
        notes.append(f'SIM: M_prob > {head.tau_high} inside the box; pseudo '
                     f'losses {state} (step {int(head._iter)}); copy-paste '
                     'off (needs the training memory bank)')
    elif isinstance(model, DiscoBox):
        gates = model.current_gates()
        if not model.with_mean_field:
            notes.append('DiscoBox: with_mean_field=False, so no pseudo '
                         'masks are labelled')
        else:
            cfg = model.gate_cfg
            if cfg['mode'] == 'running_loss':
                state = (f'MIL running avg {float(model.running_mil_loss):.3f}'
                         f' vs ts_thresh {cfg["ts_thresh"]}')
            else:
                state = (f'step {int(model.train_iters)} vs ts_start_iter '
                         f'{cfg["ts_start_iter"]}')
            was = 'open' if gates['ts'] else 'closed'
            teacher = 'EMA teacher' if gates['teacher'] else \
                'student (before teacher_start_iter)'
            notes.append(
                f'DiscoBox: self-consistency gate {was} at this checkpoint '
                f'({state}); forced open here, correspondence off. '
                f'Mean-field labels of (teacher + student) / 2, teacher: '
                f'{teacher}')
        restore = (model.gate_cfg, model.with_correspondence)
        model.gate_cfg = dict(
            model.gate_cfg, mode='iteration', ts_start_iter=0)
        model.with_correspondence = False
    model.train()
    try:
        with torch.no_grad():
            model.loss(data['inputs'], data['data_samples'])
    finally:
        if restore is not None:
            model.gate_cfg, model.with_correspondence = restore
    records = list(getattr(model, 'last_pseudo_masks', None) or [])
    return records, notes


def prediction_forward(model, data: dict, score_thr: float) -> List[dict]:
    """Eval-mode predictions of the shown view, masks at ``img_shape``."""
    inputs, samples, _, _ = split_views(data, data['inputs'])
    model.eval()
    with torch.no_grad():
        results = model.predict(inputs, samples, rescale=False)
    out = []
    for result in results:
        pred = result.pred_instances
        keep = pred.scores >= score_thr
        masks = pred.masks[keep] if 'masks' in pred else None
        h, w = result.img_shape[:2]
        if masks is None:
            masks = torch.zeros((0, h, w), dtype=torch.bool)
        masks = masks.detach().cpu().bool()[:, :h, :w]
        masks = F.pad(masks, (0, w - masks.shape[-1], 0, h - masks.shape[-2]))
        out.append(
            dict(
                masks=masks.numpy(),
                scores=pred.scores[keep].detach().cpu().numpy(),
                labels=pred.labels[keep].detach().cpu().numpy()))
    return out


def collect(items: list,
            preprocessor,
            model=None,
            thr: float = 0.3,
            mean_field: Optional[dict] = None,
            pred_score_thr: float = 0.3) -> List[dict]:
    """Records of one batch of pipeline outputs (``dataset[i]`` dicts)."""
    data = pseudo_collate(items)
    raw_inputs = data['inputs']
    preprocessor.train()
    with torch.no_grad():
        processed = preprocessor(data, True)
    records = base_records(processed, raw_inputs, preprocessor, thr,
                           mean_field)
    if model is None:
        return records
    if has_pseudo_masks(model):
        pseudo, notes = pseudo_mask_forward(model, processed)
        name = type(model).__name__
        for i, record in enumerate(records):
            record['notes'] += notes
            if i < len(pseudo):
                rec = pseudo[i]
                record['pseudo'] = dict(
                    masks=rec['masks'].detach().cpu().numpy().astype(bool),
                    valid=rec['valid'].detach().cpu().numpy().astype(bool),
                    stride=int(rec['stride']),
                    method=name)
            else:
                record['pseudo'] = dict(
                    masks=None, valid=None, stride=None, method=name)
    else:
        predictions = prediction_forward(model, processed, pred_score_thr)
        for record, pred in zip(records, predictions):
            record['prediction'] = dict(pred, method=type(model).__name__)
    return records


# -- drawing --------------------------------------------------------------
def instance_colours(num: int) -> np.ndarray:
    """``[num, 3]`` uint8 saturated colours (never grey), golden-ratio
    spaced hues."""
    colours = [
        colorsys.hsv_to_rgb((0.07 + i * 0.618034) % 1.0, 0.85, 0.95)
        for i in range(num)
    ]
    return (np.array(colours, dtype=np.float64).reshape(-1, 3) *
            255).round().astype(np.uint8)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Viridis colours of ``values`` in ``[0, 1]``: ``[..., 3]`` uint8."""
    from matplotlib import colormaps
    lut = (colormaps['viridis'](np.linspace(0, 1, 256))[:, :3] *
           255).round().astype(np.uint8)
    index = np.clip(np.round(np.asarray(values) * 255), 0, 255).astype(int)
    return lut[index]


def upsample(grid: np.ndarray, factor: int, hw: Sequence[int]) -> np.ndarray:
    """Nearest up-sampling of the last two axes by ``factor``, cropped
    (or zero-padded) to ``hw``."""
    up = np.repeat(np.repeat(grid, factor, axis=-2), factor, axis=-1)
    h, w = hw
    up = up[..., :h, :w]
    pad = [(0, 0)] * (up.ndim - 2) + [(0, h - up.shape[-2]),
                                      (0, w - up.shape[-1])]
    return np.pad(up, pad)


def dimmed_grey(image: np.ndarray) -> np.ndarray:
    """The image as dim grey (``R == G == B``), the masks' background."""
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                               dtype=np.float32)
    grey = (grey * DIM).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def scale_image(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def draw_outlines(canvas: np.ndarray, boxes: np.ndarray, scale: int,
                  colours) -> np.ndarray:
    """Box outlines (one colour per box, or one for all) on ``canvas``."""
    canvas = np.ascontiguousarray(canvas)
    for i, box in enumerate(boxes):
        colour = colours[i] if np.ndim(colours) == 2 else colours
        x1, y1, x2, y2 = (np.asarray(box) * scale).round().astype(int)
        cv2.rectangle(canvas, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1),
                      tuple(int(c) for c in colour), 1)
    return canvas


def paint_masks(canvas: np.ndarray, masks: np.ndarray,
                colours: np.ndarray) -> np.ndarray:
    """Paint ``[N, H, W]`` bool masks, largest first (small objects stay
    visible on top)."""
    order = np.argsort(-masks.sum(axis=(-2, -1)), kind='stable')
    for i in order:
        canvas[masks[i]] = colours[i]
    return canvas


def image_panel(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                colours: np.ndarray, scale: int,
                class_names: Optional[Sequence[str]]) -> np.ndarray:
    canvas = draw_outlines(scale_image(image, scale), boxes, scale, colours)
    if class_names:
        for box, label, colour in zip(boxes, labels, colours):
            label = int(label)
            name = class_names[label] if 0 <= label < len(
                class_names) else str(label)
            org = (int(box[0] * scale) + 2, max(int(box[1] * scale) - 3, 9))
            cv2.putText(canvas, name, org, cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        tuple(int(c) for c in colour), 1, cv2.LINE_AA)
    return canvas


def grid_mask_panel(image: np.ndarray, grid_masks: np.ndarray,
                    boxes: np.ndarray, colours: np.ndarray, stride: int,
                    scale: int) -> np.ndarray:
    """``[G, h, w]`` grid masks as ``stride x stride`` blocks, over the
    white box outlines, on the dim grey image."""
    hw = (image.shape[0] * scale, image.shape[1] * scale)
    canvas = draw_outlines(
        scale_image(dimmed_grey(image), scale), boxes, scale, WHITE)
    if len(grid_masks):
        masks = upsample(grid_masks.astype(bool), stride * scale, hw)
        canvas = paint_masks(canvas, masks, colours[:len(masks)])
    return canvas


def edge_panel(record: dict, scale: int) -> np.ndarray:
    """Heat map of the passing edges (or DiscoBox's affinity) per cell;
    cells outside every box dimmed, invalid cells black."""
    image = record['image']
    hw = (image.shape[0] * scale, image.shape[1] * scale)
    factor = record['stride'] * scale
    if record['affinity'] is not None:
        values = record['affinity']
    else:
        values = record['edge_counts'] / max(record['num_neighbours'], 1)
    colours = heat_colours(values).astype(np.float32)
    box_masks = record['box_masks']
    in_box = box_masks.any(axis=0) if len(box_masks) else np.zeros(
        values.shape, dtype=bool)
    colours = np.where(in_box[..., None], colours, colours * DIM)
    colours = np.where(record['image_valid'][..., None], colours, 0)
    canvas = upsample(colours.astype(np.uint8).transpose(2, 0, 1), factor,
                      hw).transpose(1, 2, 0)
    return draw_outlines(canvas, record['boxes'], scale, WHITE)


def prediction_panel(record: dict, scale: int) -> np.ndarray:
    pred = record['prediction']
    image = record['image']
    canvas = scale_image(dimmed_grey(image), scale)
    masks = scale_image(pred['masks'].transpose(1, 2, 0),
                        scale).transpose(2, 0, 1)
    return paint_masks(canvas, masks, instance_colours(len(masks)))


def put_title(canvas: np.ndarray,
              text: str,
              org: Tuple[int, int],
              width: int,
              colour=WHITE) -> None:
    """Draw ``text`` at ``org``, shrunk (then cut) to fit ``width``."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    while size > 0.3 and cv2.getTextSize(text, font, size,
                                         1)[0][0] > width - 4:
        size -= 0.025
    while len(text) > 1 and cv2.getTextSize(text, font, size,
                                            1)[0][0] > width - 4:
        text = text[:-1]
    cv2.putText(canvas, text, org, font, size, colour, 1, cv2.LINE_AA)


def compose(
    panels: List[Tuple[str, np.ndarray]], footer: Sequence[str] = ()
) -> Tuple[np.ndarray, Dict[str, tuple]]:
    """Panels side by side under their titles, notes below.

    Returns:
        tuple: the RGB canvas and, per title, the panel's ``(y0, x0, h,
        w)`` in it.
    """
    height = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + GAP * (len(panels) + 1)
    chars = max(width // 6, 20)
    lines = [
        line for text in footer for line in textwrap.wrap(text, chars) or ['']
    ]
    total = GAP + HEADER_H + height + GAP + LINE_H * len(lines) + GAP
    canvas = np.full((total, width, 3), 255, dtype=np.uint8)
    layout = {}
    x = GAP
    for title, panel in panels:
        h, w = panel.shape[:2]
        canvas[GAP:GAP + HEADER_H, x:x + w] = HEADER
        put_title(canvas, title, (x + 2, GAP + HEADER_H - 5), w)
        y0 = GAP + HEADER_H
        canvas[y0:y0 + h, x:x + w] = panel
        layout[title] = (y0, x, h, w)
        x += w + GAP
    y = GAP + HEADER_H + height + GAP
    for line in lines:
        cv2.putText(canvas, line, (GAP, y + LINE_H - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        y += LINE_H
    return canvas, layout


def statistics(record: dict) -> str:
    """One line: boxes, cells, edges per box cell, pseudo-mask fill."""
    box_masks = record['box_masks']
    num = len(box_masks)
    parts = [f'{num} boxes']
    if num == 0:
        return parts[0]
    in_box = box_masks.any(axis=0) & record['image_valid']
    cells = box_masks.reshape(num, -1).sum(1)
    parts.append(f'box cells {int(cells.min())}-{int(cells.max())}')
    if in_box.any():
        if record['affinity'] is not None:
            parts.append('mean-field affinity in boxes '
                         f'{float(record["affinity"][in_box].mean()):.2f}')
        else:
            counts = record['edge_counts'][in_box]
            parts.append(
                f'edges >= {record["thr"]:g} per box cell '
                f'{float(counts.mean()):.1f}/{record["num_neighbours"]}, '
                f'{float((counts == 0).mean()):.0%} of box cells with none')
    pseudo = record['pseudo']
    if pseudo is not None and pseudo['masks'] is not None:
        valid = pseudo['valid']
        parts.append(f'pseudo masks for {int(valid.sum())}/{num} boxes')
        if valid.any():
            area = pseudo['masks'][valid].reshape(int(valid.sum()), -1).sum(1)
            box = np.maximum(cells[valid], 1)
            parts.append(f'filling {float((area / box).mean()):.0%} of '
                         'their box cells')
    return ', '.join(parts)


def panel_titles(record: dict) -> Dict[str, str]:
    stride = record['stride']
    edges = 'mean-field affinity (DiscoBox)' if record[
        'affinity'] is not None else \
        f'edges S>={record["thr"]:g} of {record["num_neighbours"]}'
    return dict(
        image='student view + boxes'
        if record['teacher_image'] is not None else 'image + boxes',
        teacher='teacher view (colours)',
        box_masks=f'box masks (stride {stride})',
        edges=edges)


def render(
    record: dict,
    scale: int,
    class_names: Optional[Sequence[str]] = None
) -> Tuple[np.ndarray, Dict[str, tuple], Dict[str, str], list]:
    """The PNG of one record: ``(canvas, layout, titles, footer)``;
    ``titles`` maps the panel kinds (``image``, ``teacher``,
    ``box_masks``, ``edges``, ``pseudo``, ``prediction``) to the titles of
    ``layout``; ``footer`` holds the text lines under the panels."""
    titles = panel_titles(record)
    image = record['image']
    colours = instance_colours(max(len(record['boxes']), 1))
    panels = [(titles['image'],
               image_panel(image, record['boxes'], record['labels'], colours,
                           scale, class_names))]
    if record['teacher_image'] is not None:
        panels.append(
            (titles['teacher'],
             image_panel(record['teacher_image'], record['boxes'],
                         record['labels'], colours, scale, class_names)))
    panels.append((titles['box_masks'],
                   grid_mask_panel(image, record['box_masks'], record['boxes'],
                                   colours, record['stride'], scale)))
    panels.append((titles['edges'], edge_panel(record, scale)))
    notes = list(record['notes'])
    pseudo = record['pseudo']
    if pseudo is not None:
        method = pseudo['method']
        if pseudo['masks'] is None:
            titles['pseudo'] = f'{method}: no pseudo masks'
            notes.append(f'{method} produced no pseudo masks in this '
                         'forward (see the notes above)')
            grid = np.zeros((0, 1, 1), dtype=bool)
        else:
            valid = pseudo['valid']
            titles['pseudo'] = (f'{method} pseudo masks '
                                f'({int(valid.sum())}/{len(valid)})')
            grid = pseudo['masks'] & valid[:, None, None]
            if not valid.any():
                notes.append(f'{method}: no box got a pseudo mask in this '
                             'forward')
        panels.append(
            (titles['pseudo'],
             grid_mask_panel(image, grid, record['boxes'], colours,
                             pseudo['stride'] or record['stride'], scale)))
    if record['prediction'] is not None:
        method = record['prediction']['method']
        titles['prediction'] = f'{method} predicted masks'
        notes.append(f'{method} keeps no pseudo masks: its predicted masks '
                     '(eval mode) are shown instead')
        panels.append((titles['prediction'], prediction_panel(record, scale)))
    footer = [f'{record["img_path"]}: {statistics(record)}'] + notes
    canvas, layout = compose(panels, footer)
    return canvas, layout, titles, footer


def auto_scale(hw: Sequence[int]) -> int:
    return max(1, PANEL_SIDE // max(hw))


# -- driver -----------------------------------------------------------------
def browse(config: str,
           checkpoint: Optional[str] = None,
           output_dir: str = 'outputs/browse_dataset',
           num_images: int = 10,
           batch_size: int = 1,
           color_thresh: Optional[float] = None,
           scale: Optional[int] = None,
           pred_score_thr: float = 0.3,
           seed: int = 0,
           device: str = 'cpu',
           cfg_options: Optional[dict] = None) -> List[dict]:
    """Write the PNGs; returns per image ``file``, ``record``,
    ``layout``, ``titles``, ``footer`` (see :func:`render`) and
    ``scale``."""
    from mmengine.runner import set_random_seed

    from mmboxseg.registry import DATASETS
    cfg = load_config(config, cfg_options)
    check_box_supervised(cfg, config)
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    thr = color_threshold(cfg, color_thresh)
    outputs = []
    with DefaultScope.overwrite_default_scope('mmboxseg'):
        set_random_seed(seed)
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        preprocessor, model = build_model(cfg, checkpoint, device)
        # every batch starts from the checkpoint's state: a forward moves
        # step counters, gates and BN statistics
        initial = None if model is None else copy.deepcopy(model.state_dict())
        mean_field = mean_field_settings(cfg,
                                         model) if is_discobox(cfg) else None
        class_names = dataset.metainfo.get('classes')
        num = min(num_images, len(dataset))
        os.makedirs(output_dir, exist_ok=True)
        used = set()
        for start in range(0, num, batch_size):
            items = [
                dataset[i] for i in range(start, min(start + batch_size, num))
            ]
            if model is not None:
                model.load_state_dict(initial)
            records = collect(items, preprocessor, model, thr, mean_field,
                              pred_score_thr)
            for record in records:
                image = record['image']
                s = scale or auto_scale(image.shape[:2])
                canvas, layout, titles, footer = render(record, s, class_names)
                stem = osp.splitext(osp.basename(str(record['img_path'])))[0]
                name, k = stem, 1
                while name in used:
                    name, k = f'{stem}_{k}', k + 1
                used.add(name)
                out_file = osp.join(output_dir, name + '.png')
                mmcv.imwrite(canvas[..., ::-1], out_file)
                print(f'{out_file}: {statistics(record)}')
                for note in footer[1:]:
                    print(f'  {note}')
                outputs.append(
                    dict(
                        file=out_file,
                        record=record,
                        layout=layout,
                        titles=titles,
                        footer=footer,
                        scale=s))
    return outputs


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    return browse(
        args.config,
        checkpoint=args.checkpoint,
        output_dir=args.output_dir,
        num_images=args.num_images,
        batch_size=args.batch_size,
        color_thresh=args.color_thresh,
        scale=args.scale,
        pred_score_thr=args.pred_score_thr,
        seed=args.seed,
        device=args.device,
        cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
