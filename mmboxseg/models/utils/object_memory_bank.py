# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from mmboxseg.registry import TASK_UTILS

RETRIEVAL_MODES = ('first', 'random')
IOU_MODES = ('release', 'soft')
ENTRY_KEYS = ('feats', 'masks', 'boxes')


@TASK_UTILS.register_module()
class ObjectMemoryBank:
    """Per-class first-in-first-out bank of object RoIs, from which
    DiscoBox retrieves intra-class partners for dense correspondence
    (Sec. 3.6, Appendix C.3).

    Class ``c`` keeps at most ``length`` objects, oldest first:

    - ``feats``: ``[L, C, s, s]`` float16, ReLU + L2-normalised RoI
      features of the *teacher* (7 x 7 in the release);
    - ``masks``: ``[L, M, M]`` uint8, the teacher's mask probability in the
      RoI, quantised to ``/255`` (28 x 28);
    - ``boxes``: ``[L, 4]`` float32 boxes in input pixels.

    **Push rule.** An object is pushed only when its box is more than
    ``min_size`` input pixels wide *and* high. The release compares the
    stride-4 box sizes with 32 (``(max_x - min_x) > 32``, ``corr_loss``),
    i.e. 128 input pixels: the default, ``min_size=128``. The paper (Sec.
    3.6: "except the object with area < 32 x 32") is ``min_size=32``.

    **Retrieval rules** (release ``ObjectQueues.get_similar_obj``), for a
    query with mask ``m_q``, features ``f_q`` and box aspect ratio ``r_q =
    w / h``: an entry qualifies when all of

    - foreground IoU ``> fg_iou_thresh`` (0.7). ``iou='release'``
      (``cal_fg_iou``): ``sum(m_q m_k) / #{m_q + m_k >= 1}``, the product
      of the soft masks over the number of pixels where the two sum to at
      least 1; ``iou='soft'``: ``sum min(m_q, m_k) / sum max(m_q, m_k)``
      (the paper states no formula),
    - the same on the backgrounds ``1 - m`` ``> bg_iou_thresh`` (0.7;
      release ``cal_bg_iou``: ``sum((1 - m_q)(1 - m_k)) / #{2 - m_q - m_k
      >= 1}``),
    - masked appearance similarity ``sum_i (f_q . f_k)(i) m_q(i) m_k(i) /
      sum_i m_q(i) m_k(i) > appear_thresh`` (0.7, masks pooled to the
      feature grid),
    - ``r_q / r_k`` in ``ratio_range`` ([0.9, 1.2]).

    ``retrieval='first'`` returns the first ``max_retrieval`` qualifying
    entries, oldest first (release, 5); ``'random'`` draws them without
    replacement with :attr:`generator` (paper Appendix C.3: random
    sampling, at most 10).

    **Memory.** ``num_classes * length * (2 C s^2 + M^2 + 16)`` bytes at
    most (:meth:`bound_bytes`): 198 MiB for COCO (80 classes, C 256, 7 x 7,
    28 x 28). The release keeps the first 20 class queues on the GPU and
    the rest on the CPU; here entries stay on the device they were pushed
    from (``storage_device='cpu'`` forces the CPU).

    **Distributed training.** Banks are per rank: each rank pushes and
    retrieves its own objects, as in the release (which never gathers).
    Gathering 7 x 7 x 256 features of every object of every rank each
    iteration would cost more communication than the whole-model gradient
    all-reduce of a small batch, and with 100 entries per class a rank's
    own stream refills a class queue within a few hundred iterations on
    COCO. Checkpoints hold rank 0's bank (see
    :class:`mmboxseg.engine.hooks.MemoryBankHook`).

    Args:
        num_classes (int): Number of classes.
        length (int): Entries per class. Defaults to 100.
        min_size (float): A pushed box's sides exceed this, input pixels.
            Defaults to 128 (release; the paper: 32).
        fg_iou_thresh (float): Defaults to 0.7.
        bg_iou_thresh (float): Defaults to 0.7.
        appear_thresh (float): Defaults to 0.7.
        ratio_range (tuple): Defaults to (0.9, 1.2).
        max_retrieval (int): Defaults to 5.
        retrieval (str): ``'first'`` or ``'random'``.
        iou (str): ``'release'`` or ``'soft'`` (see above).
        storage_device (str, optional): Force entries onto this device.
        seed (int): Seed of :attr:`generator`.
    """

    def __init__(self,
                 num_classes: int,
                 length: int = 100,
                 min_size: float = 128.0,
                 fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.7,
                 appear_thresh: float = 0.7,
                 ratio_range=(0.9, 1.2),
                 max_retrieval: int = 5,
                 retrieval: str = 'first',
                 iou: str = 'release',
                 storage_device: Optional[str] = None,
                 seed: int = 0) -> None:
        if num_classes < 1 or length < 1 or max_retrieval < 1:
            raise ValueError('ObjectMemoryBank: num_classes, length and '
                             'max_retrieval must be >= 1, got '
                             f'{num_classes}, {length}, {max_retrieval}')
        if retrieval not in RETRIEVAL_MODES:
            raise ValueError(f'ObjectMemoryBank: retrieval must be one of '
                             f'{RETRIEVAL_MODES}, got {retrieval!r}')
        if iou not in IOU_MODES:
            raise ValueError(f'ObjectMemoryBank: iou must be one of '
                             f'{IOU_MODES}, got {iou!r}')
        if len(ratio_range) != 2 or ratio_range[0] > ratio_range[1]:
            raise ValueError('ObjectMemoryBank: ratio_range must be (low, '
                             f'high), got {ratio_range}')
        self.num_classes = num_classes
        self.length = length
        self.min_size = min_size
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh = bg_iou_thresh
        self.appear_thresh = appear_thresh
        self.ratio_range = tuple(ratio_range)
        self.max_retrieval = max_retrieval
        self.retrieval = retrieval
        self.iou = iou
        self.storage_device = storage_device
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.queues: Dict[int, Dict[str, Tensor]] = {}
        self.num_pushed = 0

    def __len__(self) -> int:
        return sum(len(q['boxes']) for q in self.queues.values())

    @property
    def capacity(self) -> int:
        return self.num_classes * self.length

    def class_size(self, label: int) -> int:
        queue = self.queues.get(int(label))
        return 0 if queue is None else len(queue['boxes'])

    # -- writing ------------------------------------------------------------
    @torch.no_grad()
    def push(self, labels: Tensor, feats: Tensor, masks: Tensor,
             boxes: Tensor) -> int:
        """Append objects to their class queues (oldest leave when full).

        Args:
            labels (Tensor): ``[N]`` class indices.
            feats (Tensor): ``[N, C, s, s]`` normalised RoI features.
            masks (Tensor): ``[N, M, M]`` probabilities in ``[0, 1]``.
            boxes (Tensor): ``[N, 4]`` boxes in input pixels.

        Returns:
            int: Number of objects pushed (after the size rule).
        """
        if not len(labels) == len(feats) == len(masks) == len(boxes):
            raise ValueError('ObjectMemoryBank.push: labels, feats, masks '
                             'and boxes differ in length')
        if len(labels) and (labels.min() < 0
                            or labels.max() >= self.num_classes):
            raise ValueError('ObjectMemoryBank.push: labels must be in [0, '
                             f'{self.num_classes}), got '
                             f'{labels.min().item()}..{labels.max().item()}')
        wh = boxes[:, 2:] - boxes[:, :2]
        keep = (wh > self.min_size).all(dim=1)
        device = self.storage_device or feats.device
        quantised = (masks.clamp(0, 1) * 255).round().to(torch.uint8)
        for label in labels[keep].unique().tolist():
            sel = keep & (labels == label)
            new = dict(
                feats=feats[sel].detach().half().to(device),
                masks=quantised[sel].to(device),
                boxes=boxes[sel].detach().float().to(device))
            old = self.queues.get(label)
            if old is not None:
                new = {
                    k: torch.cat([old[k].to(device), v])[-self.length:]
                    for k, v in new.items()
                }
            else:
                new = {k: v[-self.length:] for k, v in new.items()}
            self.queues[label] = new
        pushed = int(keep.sum())
        self.num_pushed += pushed
        return pushed

    # -- reading ------------------------------------------------------------
    def qualifying(self, label: int, query_mask: Tensor, query_feat: Tensor,
                   query_box: Tensor) -> Tensor:
        """``[L]`` bool: the class-``label`` entries that pass every
        retrieval rule for the query (see the class docstring).

        Args:
            label (int): Query class.
            query_mask (Tensor): ``[M, M]`` probabilities.
            query_feat (Tensor): ``[C, s, s]`` normalised features.
            query_box (Tensor): ``[4]``.
        """
        queue = self.queues.get(int(label))
        if queue is None:
            return query_mask.new_zeros(0, dtype=torch.bool)
        device = query_mask.device
        masks = queue['masks'].to(device).float() / 255
        feats = queue['feats'].to(device).float()
        boxes = queue['boxes'].to(device)
        q = query_mask.float()[None]
        fg_iou = self.mask_iou(q, masks)
        bg_iou = self.mask_iou(1 - q, 1 - masks)
        grid = feats.shape[-2:]
        both = F.adaptive_avg_pool2d(q[:, None], grid)[:, 0] * \
            F.adaptive_avg_pool2d(masks[:, None], grid)[:, 0]
        dots = (query_feat.float()[None] * feats).sum(dim=1)
        appear = (dots * both
                  ).flatten(1).sum(1) / both.flatten(1).sum(1).clamp_min(1e-6)

        def aspect(b):
            wh = (b[..., 2:] - b[..., :2]).clamp_min(1e-6)
            return wh[..., 0] / wh[..., 1]

        ratio = aspect(query_box.to(device).float()) / aspect(boxes)
        return ((fg_iou > self.fg_iou_thresh) & (bg_iou > self.bg_iou_thresh) &
                (appear > self.appear_thresh) & (ratio >= self.ratio_range[0])
                & (ratio <= self.ratio_range[1]))

    def mask_iou(self, a: Tensor, b: Tensor) -> Tensor:
        """``[L]`` IoU of soft masks ``a [1, M, M]`` and ``b [L, M, M]``
        (``iou='release'``: ``sum(a b) / #{a + b >= 1}``; ``'soft'``:
        ``sum min / sum max``). The background IoU is ``mask_iou(1 - a,
        1 - b)``."""
        if self.iou == 'release':
            inter = (a * b).flatten(1).sum(1)
            union = ((a + b) >= 1).flatten(1).sum(1).to(inter.dtype)
        else:
            inter = torch.minimum(a, b).flatten(1).sum(1)
            union = torch.maximum(a, b).flatten(1).sum(1)
        # the release divides by 0 (NaN, never qualifies) on empty unions
        return inter / union.clamp_min(1e-6)

    def retrieve(self, label: int, query_mask: Tensor, query_feat: Tensor,
                 query_box: Tensor) -> Optional[Dict[str, Tensor]]:
        """Intra-class partners of a query.

        Returns:
            dict or None: ``feats [K, C, s, s]`` float, ``masks [K, M, M]``
            float probabilities, ``boxes [K, 4]`` and ``indices [K]`` (queue
            positions), ``K <= max_retrieval``; None when nothing
            qualifies.
        """
        ok = self.qualifying(label, query_mask, query_feat, query_box)
        index = ok.nonzero().flatten()
        if len(index) == 0:
            return None
        if self.retrieval == 'random' and len(index) > self.max_retrieval:
            order = torch.randperm(len(index), generator=self.generator)
            index = index[order[:self.max_retrieval].to(index.device)]
        else:
            index = index[:self.max_retrieval]
        queue = self.queues[int(label)]
        device = query_mask.device
        cpu_index = index.cpu()
        return dict(
            feats=queue['feats'][cpu_index.to(
                queue['feats'].device)].to(device).float(),
            masks=queue['masks'][cpu_index.to(
                queue['masks'].device)].to(device).float() / 255,
            boxes=queue['boxes'][cpu_index.to(
                queue['boxes'].device)].to(device),
            indices=index)

    # -- accounting and checkpoints -----------------------------------------
    def nbytes(self) -> int:
        """Bytes held by the entries."""
        return sum(t.numel() * t.element_size() for q in self.queues.values()
                   for t in q.values())

    def bound_bytes(self,
                    channels: int,
                    feat_size: int = 7,
                    mask_size: int = 28) -> int:
        """Upper bound of :meth:`nbytes` (see the class docstring)."""
        per_object = 2 * channels * feat_size**2 + mask_size**2 + 16
        return self.num_classes * self.length * per_object

    def state_dict(self) -> dict:
        """Tensors, ints and lists only (``weights_only``-safe)."""
        return dict(
            num_classes=self.num_classes,
            length=self.length,
            num_pushed=self.num_pushed,
            rng_state=self.generator.get_state(),
            labels=sorted(self.queues),
            queues=[{
                k: v.cpu()
                for k, v in self.queues[c].items()
            } for c in sorted(self.queues)])

    def load_state_dict(self, state: dict) -> None:
        missing = {'labels', 'queues', 'rng_state', 'num_pushed'} - set(state)
        if missing:
            raise KeyError('ObjectMemoryBank.load_state_dict: the '
                           f'checkpoint\'s memory_bank lacks {sorted(missing)}'
                           ' (was it written by a MemoryBank?)')
        queues = {}
        for label, queue in zip(state['labels'], state['queues']):
            if set(queue) != set(ENTRY_KEYS) or not \
                    0 <= int(label) < self.num_classes:
                raise KeyError('ObjectMemoryBank.load_state_dict: class queue '
                               f'{label} has keys {sorted(queue)}; expected '
                               f'{sorted(ENTRY_KEYS)} and a label below '
                               f'{self.num_classes}')
            device = self.storage_device or 'cpu'
            queues[int(label)] = {
                k: v[-self.length:].to(device)
                for k, v in queue.items()
            }
        self.queues = queues
        self.generator.set_state(state['rng_state'].cpu())
        self.num_pushed = int(state['num_pushed'])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'length={self.length}, size={len(self)})')
