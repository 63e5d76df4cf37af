# Copyright (c) mmboxseg contributors. All rights reserved.
from mmdet.datasets.transforms import PackDetInputs

from mmboxseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackDetInputsWithEvalMasks(PackDetInputs):
    """mmdet's :class:`PackDetInputs` that packs the loaded ground-truth
    masks as ``gt_instances.eval_masks`` instead of ``gt_instances.masks``.

    Box-supervised heads read ``gt_instances.masks`` only under mixed
    supervision; under box supervision no head and no loss reads
    ``eval_masks``. They exist for :class:`PseudoMaskQualityHook`, which
    scores pseudo masks against them after each training step. Load them
    with ``LoadAnnotations(with_mask=True)`` from a file that has masks;
    Resize/Flip transform them like any ``gt_masks`` and crowd instances are
    split off by ``gt_ignore_flags`` as usual.
    """
    mapping_table = dict(PackDetInputs.mapping_table, gt_masks='eval_masks')
