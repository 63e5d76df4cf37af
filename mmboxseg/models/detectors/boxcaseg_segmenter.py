# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmengine.model import BaseModel
from mmengine.structures import PixelData
from torch import Tensor

from mmboxseg.registry import MODELS

SOURCES = ('box', 'salient')
# maskrcnn-benchmark's Caffe pixel means (BGR order), which the release
# subtracts from the R, G, B channels of box crops (hybrid_data_loader.py
# ToTensor l.100-102, ToTensor_T l.175-177)
CAFFE_MEANS = (102.9801, 115.9465, 122.7717)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@MODELS.register_module()
class BoxCasegDataPreprocessor(DetDataPreprocessor):
    """Per-source input normalisation of the BoxCaseg release.

    The release (``joint_training/tools/hybrid_data_loader.py``,
    ``ToTensor`` l.80-141, ``ToTensor_T`` l.162-185) normalises its two
    sources differently; the paper says nothing about it:

    - box crops (training, evaluation and proxy-mask crops):
      ``x / 255 - m / 255`` per RGB channel with ``m`` the Caffe means
      ``(102.9801, 115.9465, 122.7717)`` (BGR means applied to R, G, B as
      the release does), no std division;
    - salient images: ``x / max(x)`` (the maximum over the whole ``[3, H,
      W]`` crop), then ImageNet ``(v - mean) / std`` with mean ``(0.485,
      0.456, 0.406)``, std ``(0.229, 0.224, 0.225)``.

    ``x`` is the ``[3, H, W]`` RGB crop after resizing and cropping. The
    release's ``skimage`` resize maps pixels to ``[0, 1]``; on the 0-255
    pixels here the box formula is ``(x - m) / 255`` and the salient one
    is unchanged (``x / max(x)`` is scale-free). The output is the
    ``[N, 3, H, W]`` float batch. A sample's source is
    ``metainfo['source']``; samples
    without one (the proxy-mask tool's crops) are box crops. An all-zero
    salient crop, which the release divides by zero, maps to ``-mean /
    std``.

    ``normalisation='common'`` keeps one normalisation for both sources,
    mmdet's ``DetDataPreprocessor`` with ``mean`` / ``std`` (what mmboxseg
    did before following the release).

    Args:
        normalisation (str): ``'per_source'`` (release, default) or
            ``'common'``.
        box_mean (Sequence[float]): Subtracted from box crops, RGB, 0-255
            units. Defaults to the Caffe means.
        box_std (Sequence[float]): Box crops are divided by it. Defaults to
            255 (the release's ``/ 255`` without a std).
        salient_mean (Sequence[float]): ImageNet mean in ``[0, 1]`` units.
        salient_std (Sequence[float]): ImageNet std in ``[0, 1]`` units.
        mean, std: ``DetDataPreprocessor`` normalisation, used with
            ``normalisation='common'`` only.
        **kwargs: Other :class:`DetDataPreprocessor` arguments
            (``bgr_to_rgb``, ``pad_size_divisor``, ...).
    """

    def __init__(self,
                 normalisation: str = 'per_source',
                 box_mean: Sequence[float] = CAFFE_MEANS,
                 box_std: Sequence[float] = (255.0, 255.0, 255.0),
                 salient_mean: Sequence[float] = IMAGENET_MEAN,
                 salient_std: Sequence[float] = IMAGENET_STD,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 **kwargs) -> None:
        if normalisation not in ('per_source', 'common'):
            raise ValueError("normalisation must be 'per_source' or "
                             f"'common', got {normalisation!r}")
        if normalisation == 'per_source' and (mean is not None
                                              or std is not None):
            raise ValueError("mean/std are for normalisation='common'; "
                             "'per_source' uses box_mean/box_std and "
                             'salient_mean/salient_std')
        super().__init__(mean=mean, std=std, **kwargs)
        self.normalisation = normalisation
        for name, value in (('box_mean', box_mean), ('box_std', box_std),
                            ('salient_mean', salient_mean), ('salient_std',
                                                             salient_std)):
            self.register_buffer(name,
                                 torch.tensor(value).view(1, -1, 1, 1), False)

    def normalise_per_source(self, inputs: Tensor,
                             sources: Sequence[str]) -> Tensor:
        """``[N, 3, H, W]`` RGB 0-255 inputs normalised by their sources."""
        inputs = inputs.float()
        salient = torch.tensor([s == 'salient' for s in sources],
                               device=inputs.device).view(-1, 1, 1, 1)
        box = (inputs - self.box_mean) / self.box_std
        peak = inputs.flatten(1).amax(dim=1).clamp(min=1e-6).view(-1, 1, 1, 1)
        sal = (inputs / peak - self.salient_mean) / self.salient_std
        return torch.where(salient, sal, box)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if self.normalisation == 'per_source':
            samples = data.get('data_samples') or []
            sources = [s.metainfo.get('source', 'box') for s in samples]
            sources += ['box'] * (len(data['inputs']) - len(sources))
            data['inputs'] = self.normalise_per_source(data['inputs'], sources)
        return data


def minmax_normalise(probs: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-sample ``(p - min) / (max - min)`` of ``[N, H, W]`` maps (the
    release's ``normPRED``); a constant map becomes all zero instead of
    ``0 / 0``."""
    flat = probs.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1)
    return (probs - lo) / (hi - lo).clamp(min=eps)


@MODELS.register_module()
class BoxCasegSegmenter(BaseModel):
    """Box-supervised class-agnostic segmenter of BoxCaseg (Wang et al.,
    CVPR 2021), trained jointly on box crops and salient images (Fig. 4).

    Every sample is a crop: a jittered box crop of a box-annotated image
    (``metainfo['source'] == 'box'``, label map = its box) or a salient
    image (``'salient'``, label map = its mask). The loss is Eq. (4):

    - ``loss_mil``: MIL over row/column bags of the weak head, every sample
      (Eq. 1, unary part);
    - ``loss_smooth``: the eight-neighbour smooth term of the weak head,
      every sample, weight 0.05 (Eq. 2);
    - ``loss_pixel``: binary cross-entropy of the fused salient/transferred
      logits against the saliency mask, salient samples only (Eq. 3,
      ``lambda = 0`` for box crops); as in the release, those two heads
      run on the salient samples of the batch only.

    Logits at stride 4 are upsampled bilinearly to the label size first, as
    in the release. Every label map is divided by its maximum first, as
    the release does: a 0/1 box map is unchanged, a raw 0-255 saliency map
    (``LoadSalientMask(thr=None)``, the release's default) becomes a soft
    ``[0, 1]`` target of the pixel and MIL losses. A box crop's label map
    is its box, so box-supervised training never sees a mask. Inputs are
    normalised per source by :class:`BoxCasegDataPreprocessor`.

    At test time the fused head predicts each crop: sigmoid, per-sample
    min-max normalisation (release), resize to the crop's size in the
    original image (``metainfo['crop_shape']``) and threshold.

    Args:
        backbone (dict): Backbone config (HRNet-W48 in the paper).
        decode_head (dict): :class:`BoxCasegHead` config.
        loss_mil (dict): MIL bag loss config.
        loss_smooth (dict): Smoothness loss config.
        loss_pixel_weight (float): ``lambda`` of Eq. (4) for salient
            samples. Defaults to 1.0.
        test_cfg (dict, optional): ``minmax_normalise`` (bool, default
            True) and ``mask_thr`` (default 0.5).
        data_preprocessor (dict, optional): Defaults to
            :class:`BoxCasegDataPreprocessor` (the release's per-source
            normalisation) with ``bgr_to_rgb=True``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 loss_mil: dict = dict(type='MILBagLoss'),
                 loss_smooth: dict = dict(
                     type='NeighbourSmoothnessLoss', loss_weight=0.05),
                 loss_pixel_weight: float = 1.0,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='BoxCasegDataPreprocessor', bgr_to_rgb=True)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.decode_head = MODELS.build(decode_head)
        self.loss_mil = MODELS.build(loss_mil)
        self.loss_smooth = MODELS.build(loss_smooth)
        self.loss_pixel_weight = loss_pixel_weight
        test_cfg = dict(test_cfg or {})
        unknown = set(test_cfg) - {'minmax_normalise', 'mask_thr'}
        if unknown:
            raise TypeError(f'unknown test_cfg keys {sorted(unknown)}; '
                            "expected 'minmax_normalise' and 'mask_thr'")
        self.minmax = test_cfg.get('minmax_normalise', True)
        self.mask_thr = test_cfg.get('mask_thr', 0.5)

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone features of ``[N, 3, H, W]`` crops."""
        return self.backbone(inputs)

    def head_logits(self,
                    inputs: Tensor,
                    select: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The heads' ``[N, H, W]`` logits at the input size (``select``:
        see :meth:`BoxCasegHead.forward`)."""
        outs = self.decode_head(self.extract_feat(inputs), select)
        size = inputs.shape[-2:]
        return {
            k:
            F.interpolate(v, size=size, mode='bilinear',
                          align_corners=False)[:, 0]
            for k, v in outs.items()
        }

    def loss(self, inputs: Tensor, data_samples: List) -> Dict[str, Tensor]:
        """Eq. (4) on a batch of box crops and salient images."""
        sources = [s.metainfo.get('source') for s in data_samples]
        bad = sorted({str(s) for s in sources} - set(SOURCES))
        if bad:
            raise ValueError(
                f'BoxCasegSegmenter needs metainfo "source" in {SOURCES} on '
                f'every sample (set by BoxCropDataset / SalientDataset and '
                f'packed through PackDetInputs meta_keys), got {bad}')
        labels = torch.stack([s.gt_sem_seg.sem_seg[0] for s in data_samples])
        labels = labels.to(inputs.device).float()
        # the release divides every label map by its maximum (ToTensor
        # l.90-93, 119-122): 0/1 box maps stay as they are, raw 0-255
        # saliency maps (LoadSalientMask(thr=None)) become soft [0, 1]
        # targets; an all-zero map stays zero
        peak = labels.flatten(1).amax(dim=1).view(-1, 1, 1)
        labels = torch.where(peak > 1e-6, labels / peak.clamp(min=1e-6),
                             labels)
        if labels.shape[-2:] != inputs.shape[-2:]:
            raise ValueError(
                f'label maps {tuple(labels.shape[-2:])} and inputs '
                f'{tuple(inputs.shape[-2:])} differ in size; resize both in '
                'the pipeline')
        salient = torch.tensor([s == 'salient' for s in sources],
                               device=inputs.device)
        # the salient/transferred heads see salient images only (release);
        # a batch without any runs them on its first sample at weight 0 so
        # that every parameter stays in the graph (DDP)
        select = salient if salient.any() else torch.arange(
            len(sources), device=inputs.device) == 0
        logits = self.head_logits(inputs, select)
        losses = dict(
            loss_mil=self.loss_mil(logits['weak'], labels),
            loss_smooth=self.loss_smooth(logits['weak']))
        loss_pixel = F.binary_cross_entropy_with_logits(
            logits['fused'], labels[select])
        if not salient.any():
            loss_pixel = loss_pixel * 0
        losses['loss_pixel'] = self.loss_pixel_weight * loss_pixel
        losses['salient_frac'] = salient.float().mean().detach()
        return losses

    def logits_to_probs(self, logits: Tensor) -> Tensor:
        """Sigmoid of ``[N, H, W]`` logits of any head, min-max normalised
        per crop when configured."""
        probs = logits.sigmoid()
        return minmax_normalise(probs) if self.minmax else probs

    @staticmethod
    def resize_to_crop(prob: Tensor, crop_hw) -> Tensor:
        """``[1, h, w]`` bilinear resize of one ``[H, W]`` probability map
        to the crop's size in the original image."""
        h, w = crop_hw
        return F.interpolate(
            prob[None, None],
            size=(int(h), int(w)),
            mode='bilinear',
            align_corners=False)[0]

    @torch.no_grad()
    def predict_probs(self, inputs: Tensor) -> Tensor:
        """``[N, H, W]`` foreground probabilities of the fused heads at the
        input size, min-max normalised per crop when configured."""
        return self.logits_to_probs(self.head_logits(inputs)['fused'])

    def predict(self, inputs: Tensor, data_samples: List) -> List:
        """Adds ``pred_sem_seg`` (``sem_seg``: ``[1, h, w]`` bool mask,
        ``prob``: ``[1, h, w]`` probabilities) at each crop's original size
        to the data samples."""
        probs = self.predict_probs(inputs)
        for prob, sample in zip(probs, data_samples):
            prob = self.resize_to_crop(
                prob,
                sample.metainfo.get('crop_shape',
                                    sample.metainfo['ori_shape']))
            sample.pred_sem_seg = PixelData(
                sem_seg=prob > self.mask_thr, prob=prob)
        return data_samples

    def _forward(self,
                 inputs: Tensor,
                 data_samples: Optional[List] = None) -> Dict[str, Tensor]:
        return self.decode_head(self.extract_feat(inputs))

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[List] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], List]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, '
                           'predict and tensor mode')
