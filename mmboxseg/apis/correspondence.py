# Copyright (c) mmboxseg contributors. All rights reserved.
"""Dense correspondence and keypoint transfer between two images (or two
detected instances) with a DiscoBox model: the correspondence half of
DiscoBox as a product.

Example::

    from mmdet.apis import init_detector
    from mmboxseg.apis import dense_correspondence, transfer_keypoints
    model = init_detector(cfg_file, ckpt, device='cpu')
    out = dense_correspondence(model, 'a.jpg', 'b.jpg')
    kps_b = transfer_keypoints(model, 'a.jpg', 'b.jpg', [[50, 60]])
"""
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config

ImageType = Union[str, np.ndarray]


def _test_scale(cfg: Config) -> Tuple[int, int]:
    """The ``Resize`` scale of the config's test pipeline (COCO's
    1333 x 800 when there is none)."""
    try:
        pipeline = cfg.test_dataloader.dataset.pipeline
    except AttributeError:
        pipeline = []
    for step in pipeline:
        if step.get('type') == 'Resize' and 'scale' in step:
            return tuple(step['scale'])
    return (1333, 800)


def _load(image: ImageType, name: str) -> np.ndarray:
    if isinstance(image, str):
        img = mmcv.imread(image)
        if img is None:
            raise FileNotFoundError(f'{name}: cannot read image {image}')
        return img
    if not (isinstance(image, np.ndarray) and image.ndim == 3
            and image.shape[2] == 3):
        raise TypeError(f'{name}: expected a path or an (H, W, 3) BGR '
                        f'array, got {type(image).__name__}')
    return image


def _detected_box(model, inputs, sample) -> Optional[torch.Tensor]:
    """Box of the top-scoring detection (its mask extent), or None."""
    results = model.predict(inputs, [sample], rescale=False)[0].pred_instances
    if len(results) == 0:
        return None
    best = int(results.scores.argmax())
    box = results.bboxes[best]
    if float((box[2:] - box[:2]).min()) <= 0:
        return None
    return box.float()


@torch.no_grad()
def dense_correspondence(model,
                         image_a: ImageType,
                         image_b: ImageType,
                         box_a: Optional[Sequence[float]] = None,
                         box_b: Optional[Sequence[float]] = None,
                         grid: Optional[int] = None) -> dict:
    """Dense correspondence of the object in ``image_a`` to the object in
    ``image_b``.

    Each image is resized as the config's test pipeline does and run
    through the network on its own; RoI features of the finest FPN level
    (ReLU + L2) inside the two boxes give the cost volume, solved as in
    training (:meth:`DiscoBox.match_rois`).

    Args:
        model: A :class:`~mmboxseg.models.detectors.DiscoBox` (e.g. from
            ``mmdet.apis.init_detector``).
        image_a, image_b: Paths or ``(H, W, 3)`` BGR arrays.
        box_a, box_b: ``(x1, y1, x2, y2)`` in original pixels; when None,
            the top-scoring detection, else the whole image.
        grid (int, optional): RoI grid side (default: the model's
            ``correspondence_test_cfg['grid']``).

    Returns:
        dict: ``grid``; ``box_a``/``box_b`` ``[4]`` used (original pixels);
        ``points_a`` ``[g*g, 2]`` the source cell centres, ``points_b``
        ``[g*g, 2]`` their matches and ``scores [g*g]`` the match scores;
        ``scores_matrix [g*g, g*g]``. Numpy arrays.
    """
    if not hasattr(model, 'match_rois'):
        raise TypeError(f'{type(model).__name__} has no match_rois; load a '
                        'DiscoBox config')
    model.eval()
    scale = _test_scale(model.cfg) if hasattr(model, 'cfg') else (1333, 800)
    device = next(model.parameters()).device
    imgs = [_load(image_a, 'image_a'), _load(image_b, 'image_b')]
    resized, factors = [], []
    for img in imgs:
        out, factor = mmcv.imrescale(img, scale, return_scale=True)
        resized.append(out)
        factors.append(factor)
    samples = [
        DetDataSample(
            metainfo=dict(
                img_shape=r.shape[:2],
                ori_shape=r.shape[:2],
                scale_factor=(1.0, 1.0))) for r in resized
    ]
    data = model.data_preprocessor(
        dict(
            inputs=[
                torch.from_numpy(r.transpose(2, 0, 1).copy()).to(device)
                for r in resized
            ],
            data_samples=samples), False)
    inputs = data['inputs']
    boxes = []
    for i, (given, r) in enumerate(zip((box_a, box_b), resized)):
        if given is not None:
            box = torch.as_tensor(
                given, dtype=torch.float32, device=device) * factors[i]
        else:
            box = _detected_box(model, inputs[i:i + 1],
                                data['data_samples'][i])
        if box is None:
            box = torch.tensor([0, 0, r.shape[1], r.shape[0]],
                               dtype=torch.float32,
                               device=device)
        boxes.append(box)
    boxes = torch.stack(boxes)
    net = model._inference_net()
    feats = net.extract_feat(inputs)[0]
    scores, grid = model.match_rois(feats, boxes,
                                    inputs.shape[-1] / feats.shape[-1], grid)
    centres = (torch.stack(
        torch.meshgrid(
            torch.arange(grid, device=device),
            torch.arange(grid, device=device),
            indexing='xy'),
        dim=-1).reshape(-1, 2).float() + 0.5) / grid
    wh_a, wh_b = boxes[0, 2:] - boxes[0, :2], boxes[1, 2:] - boxes[1, :2]
    points_a = boxes[0, :2] + centres * wh_a
    best, match = scores.max(dim=1)
    points_b = boxes[1, :2] + centres[match] * wh_b
    return dict(
        grid=grid,
        box_a=(boxes[0] / factors[0]).cpu().numpy(),
        box_b=(boxes[1] / factors[1]).cpu().numpy(),
        points_a=(points_a / factors[0]).cpu().numpy(),
        points_b=(points_b / factors[1]).cpu().numpy(),
        scores=best.cpu().numpy(),
        scores_matrix=scores.cpu().numpy())


def transfer_keypoints(model,
                       image_a: ImageType,
                       image_b: ImageType,
                       keypoints: Sequence[Sequence[float]],
                       box_a: Optional[Sequence[float]] = None,
                       box_b: Optional[Sequence[float]] = None,
                       grid: Optional[int] = None,
                       correspondence: Optional[dict] = None) -> np.ndarray:
    """Move ``keypoints [N, 2]`` (x, y, original pixels of ``image_a``) to
    ``image_b``: each keypoint takes the match of the RoI cell it falls in
    (:meth:`DiscoBox.transfer_keypoints`; points outside the box are
    clamped to its border cells).

    Args:
        correspondence (dict, optional): A :func:`dense_correspondence`
            result for these images, reused instead of running the network
            again (the boxes and grid arguments are then ignored).

    Returns:
        np.ndarray: ``[N, 2]`` in ``image_b``'s original pixels.
    """
    out = correspondence or dense_correspondence(model, image_a, image_b,
                                                 box_a, box_b, grid)
    # box-relative cell positions do not change with the resize, so the
    # lookup runs in original pixels
    points = model.transfer_keypoints(
        torch.from_numpy(out['scores_matrix']), out['grid'],
        torch.from_numpy(out['box_a']).float(),
        torch.from_numpy(out['box_b']).float(),
        torch.as_tensor(np.asarray(keypoints, np.float32)).view(-1, 2))
    return points.numpy()
