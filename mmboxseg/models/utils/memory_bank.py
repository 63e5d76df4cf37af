# Copyright (c) mmboxseg contributors. All rights reserved.
import math
from collections import deque
from typing import Dict, List

import torch
from torch import Tensor

from mmboxseg.registry import TASK_UTILS

ENTRY_KEYS = ('image', 'bboxes', 'labels', 'mask_probs', 'scores')


@TASK_UTILS.register_module()
class MemoryBank:
    """First-in-first-out bank of recent training images with their boxes,
    labels, pseudo masks and mask scores (SIM, Sec. 3.3), the source of
    :class:`mmboxseg.datasets.transforms.WeakCopyPaste`.

    Every tensor is kept on the CPU. One entry holds

    - ``image``: ``[3, h, w]`` uint8, the raw (un-normalised) image in the
      loader's channel order, without batch padding;
    - ``bboxes`` ``[K, 4]`` float32, ``labels`` ``[K]`` int64,
      ``scores`` ``[K]`` float32 (Eq. 11 mask scores);
    - ``mask_probs``: ``[K, ceil(h/4), ceil(w/4)]`` uint8, the pseudo-mask
      probability ``M_prob`` inside each box, quantised to ``/255``, at the
      mask stride (4).

    **Memory.** At most ``length`` entries and ``max_instances`` instances
    per entry (those with the highest scores are kept), so the bank never
    holds more than :meth:`bound_bytes` ``(h, w)`` =
    ``length * (3 h w + max_instances * (ceil(h/4) ceil(w/4) + 28))``
    bytes for images of at most ``h x w``. With 100 entries and 100
    instances at COCO's 800 x 1333 that is 305 MiB of images plus at most
    637 MiB of masks: 942 MiB in the worst case, 350 MiB at COCO's 7
    objects per image; 5.2 MiB on the 128-px toy data (measured with
    ``tools/analysis_tools/memory_bank_size.py``, whose ``--length`` is
    100); the default 50 entries (the code's) hold half of that.
    :meth:`nbytes` is the actual size. The bank is saved in checkpoints by
    :class:`mmboxseg.engine.hooks.MemoryBankHook`, so it also adds that
    much to every checkpoint.

    It owns the RNG that copy-paste samples with (seeded by ``seed`` plus
    the rank, state saved and restored with the bank), so in a single
    process an interrupted and resumed run pastes exactly what an
    uninterrupted one would. Under distributed training checkpoints hold
    rank 0's bank and generator, which every rank gets back on resume; the
    hook then re-seeds the other ranks' generators.

    Args:
        length (int): Number of entries (the code's ``LENGTH``, 50; the
            paper: 100).
        max_instances (int): Instances kept per entry.
        seed (int): Seed of :attr:`generator`.
    """

    def __init__(self,
                 length: int = 50,
                 max_instances: int = 100,
                 seed: int = 0) -> None:
        if length < 1 or max_instances < 1:
            raise ValueError('MemoryBank: length and max_instances must be '
                             f'>= 1, got {length} and {max_instances}')
        self.length = length
        self.max_instances = max_instances
        self.entries: deque = deque(maxlen=length)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.num_pushed = 0

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def is_full(self) -> bool:
        return len(self.entries) == self.length

    def push(self, image: Tensor, bboxes: Tensor, labels: Tensor,
             mask_probs: Tensor, scores: Tensor) -> None:
        """Append one image (the oldest entry leaves when full).

        Args:
            image (Tensor): ``[3, h, w]`` uint8.
            bboxes (Tensor): ``[K, 4]`` in the image's pixels.
            labels (Tensor): ``[K]``.
            mask_probs (Tensor): ``[K, >= ceil(h/4), >= ceil(w/4)]`` float
                in ``[0, 1]`` (cropped here) or uint8.
            scores (Tensor): ``[K]``.
        """
        if image.dtype != torch.uint8 or image.dim() != 3:
            raise TypeError('MemoryBank.push: image must be a [3, h, w] '
                            f'uint8 tensor, got {image.dtype} '
                            f'{tuple(image.shape)}')
        num = len(bboxes)
        if not len(labels) == len(mask_probs) == len(scores) == num:
            raise ValueError('MemoryBank.push: bboxes, labels, mask_probs '
                             'and scores differ in length')
        h, w = image.shape[-2:]
        mh, mw = math.ceil(h / 4), math.ceil(w / 4)
        if mask_probs.shape[-2] < mh or mask_probs.shape[-1] < mw:
            raise ValueError(
                f'MemoryBank.push: masks {tuple(mask_probs.shape[-2:])} do '
                f'not cover the image {(h, w)} at stride 4')
        if num > self.max_instances:
            keep = scores.topk(self.max_instances).indices
            bboxes, labels = bboxes[keep], labels[keep]
            mask_probs, scores = mask_probs[keep], scores[keep]
        mask_probs = mask_probs[:, :mh, :mw]
        if mask_probs.dtype != torch.uint8:
            mask_probs = (mask_probs.clamp(0, 1) * 255).round().to(torch.uint8)
        self.entries.append(
            dict(
                image=image.detach().cpu().clone(),
                bboxes=bboxes.detach().float().cpu(),
                labels=labels.detach().long().cpu(),
                # a copy: a slice would keep the caller's tensor alive
                mask_probs=mask_probs.detach().cpu().clone(),
                scores=scores.detach().float().cpu()))
        self.num_pushed += 1

    def sample(self) -> Dict[str, Tensor]:
        """A uniformly random entry, drawn with :attr:`generator`."""
        if not self.entries:
            raise IndexError('MemoryBank.sample: the bank is empty')
        index = int(
            torch.randint(len(self.entries), (1, ), generator=self.generator))
        return self.entries[index]

    def nbytes(self) -> int:
        """Bytes held by the tensors of all entries."""
        return sum(t.numel() * t.element_size() for e in self.entries
                   for t in e.values())

    def bound_bytes(self, image_hw) -> int:
        """Upper bound of :meth:`nbytes` for images of at most
        ``image_hw = (h, w)``: see the class docstring."""
        h, w = image_hw
        per_instance = math.ceil(h / 4) * math.ceil(w / 4) + 4 * 4 + 8 + 4
        return self.length * (3 * h * w + self.max_instances * per_instance)

    # -- checkpointing (only tensors, ints and lists: weights_only-safe) ----
    def state_dict(self) -> dict:
        return dict(
            length=self.length,
            max_instances=self.max_instances,
            num_pushed=self.num_pushed,
            rng_state=self.generator.get_state(),
            entries=[dict(e) for e in self.entries])

    def load_state_dict(self, state: dict) -> None:
        missing = {'entries', 'rng_state', 'num_pushed'} - set(state)
        if missing:
            raise KeyError(f'MemoryBank.load_state_dict: the checkpoint\'s '
                           f'memory_bank lacks {sorted(missing)}')
        entries: List[dict] = state['entries']
        for i, entry in enumerate(entries):
            if set(entry) != set(ENTRY_KEYS):
                raise KeyError(f'MemoryBank.load_state_dict: entry {i} has '
                               f'keys {sorted(entry)}, expected '
                               f'{sorted(ENTRY_KEYS)}')
        # resume loads checkpoints onto the training device; the bank and
        # its generator live on the CPU
        entries = [{k: v.cpu() for k, v in entry.items()} for entry in entries]
        # a shorter bank keeps the newest entries, as pushing them would
        self.entries = deque(entries[-self.length:], maxlen=self.length)
        self.generator.set_state(state['rng_state'].cpu())
        self.num_pushed = int(state['num_pushed'])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(length={self.length}, '
                f'max_instances={self.max_instances}, size={len(self)})')
