# Copyright (c) mmboxseg contributors. All rights reserved.
import itertools
from typing import Iterator, List, Optional, Sized, Union

import numpy as np
import torch
from mmdet.datasets.samplers import MultiSourceSampler

from mmboxseg.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class BoxSalientRatioSampler(MultiSourceSampler):
    """BoxCaseg's batch composition on COCO (Sec. 4.2.3): every batch holds
    a fixed number of box crops and salient images, ``source_ratio`` =
    ``r_ws``. The default is the release's COCO run, 11:5
    (``train_cd.sh`` ``--weakly_ratio 0.6875``; Table 5: 70.7 mIoU*); the
    paper's best ratio, 9:7 (Table 5: 70.9 mIoU*, against 58.1 for random
    sampling), is ``source_ratio=[9, 7]``.

    The release draws ``int(32 * 0.6875) = 22`` box crops and 10 salient
    images for each *global* batch of 32 (2 GPUs x 16) and deals them out
    to the GPUs at random (``combined_random_sampler.py`` l.24-34,
    113-151), so one GPU's 16 vary around 11:5; here every rank's batch is
    exactly 11:5, the same global ratio. (PASCAL VOC runs in the release
    sample the union of both sources at random: the VOC config uses
    mmengine's ``InfiniteSampler`` instead of this sampler.)

    An infinite sampler (iteration-based loops) over a ``ConcatDataset`` of
    the box-crop source (first) and the salient source (second); it is
    mmdet's :class:`MultiSourceSampler` plus the release's occlusion drop:
    with ``overlap_drop_prob > 0``, every pass over the box source leaves
    out each box flagged ``overlapped`` by :class:`BoxCropDataset` with that
    probability (0.75 for COCO in the release: ``random.random() <= 0.75``
    for every box of ``overlap_anno_id.json`` in each epoch,
    ``combined_random_sampler.py`` l.94-101), so heavily overlapping boxes,
    whose crops hold two objects, are seen less often. The release redraws
    the drop in every epoch (one pass over the salient images); here in
    every pass over the box source, which keeps the same rate.

    Args:
        dataset (Sized): ``ConcatDataset([box_crops, salient_images])``.
        batch_size (int): Must equal the data loader's batch size.
        source_ratio (list[int | float]): Box crops : salient images per
            batch. Defaults to ``[11, 5]`` (release).
        overlap_drop_prob (float): Defaults to 0 (no drop).
        shuffle (bool): Defaults to True.
        seed (int, optional): Random seed (synchronised across ranks when
            None).
    """

    def __init__(self,
                 dataset: Sized,
                 batch_size: int,
                 source_ratio: List[Union[int, float]] = [11, 5],
                 overlap_drop_prob: float = 0.0,
                 shuffle: bool = True,
                 seed: Optional[int] = None) -> None:
        if not 0.0 <= overlap_drop_prob < 1.0:
            raise ValueError('overlap_drop_prob must lie in [0, 1), got '
                             f'{overlap_drop_prob}')
        sizes = [len(d) for d in getattr(dataset, 'datasets', [])]
        if len(sizes) != len(source_ratio) or min(sizes, default=0) == 0:
            # an empty source would make the infinite index stream spin
            # forever without yielding
            raise ValueError(
                f'{type(self).__name__} needs a ConcatDataset of '
                f'{len(source_ratio)} non-empty sources (box crops, salient '
                f'images), got sources of sizes {sizes}; check ann_file / '
                'img_dir / filter_cfg of each source')
        self.overlap_drop_prob = overlap_drop_prob
        self._overlapped = None
        if overlap_drop_prob > 0:
            box_source = dataset.datasets[0]
            try:
                self._overlapped = np.array([
                    bool(box_source.get_data_info(i)['overlapped'])
                    for i in range(len(box_source))
                ])
            except KeyError as e:
                raise KeyError(
                    'overlap_drop_prob > 0 needs the first source to flag '
                    "'overlapped' boxes (BoxCropDataset)") from e
        super().__init__(
            dataset,
            batch_size,
            list(source_ratio),
            shuffle=shuffle,
            seed=seed)
        if min(self.num_per_source) < 1:
            raise ValueError(
                f'batch_size {batch_size} with source_ratio {source_ratio} '
                f'leaves a source without samples: {self.num_per_source}')
        if self._overlapped is not None:
            self.source2inds[0] = itertools.islice(self._box_indices(),
                                                   self.rank, None,
                                                   self.world_size)

    def _box_indices(self) -> Iterator[int]:
        """Infinite shuffled passes over the box source, each leaving out
        overlapped boxes with probability ``overlap_drop_prob``."""
        g = torch.Generator()
        g.manual_seed(self.seed)
        size = len(self._overlapped)
        while True:
            order = (
                torch.randperm(size, generator=g)
                if self.shuffle else torch.arange(size))
            coin = torch.rand(size, generator=g).numpy()
            drop = self._overlapped[order.numpy()] & (
                coin < self.overlap_drop_prob)
            yield from order[torch.from_numpy(~drop)].tolist()
