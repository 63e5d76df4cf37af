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


def eval_mask_pipeline(pipeline):
    """A copy of ``pipeline`` that loads the ground-truth masks and packs
    them as ``eval_masks`` (recursively: BoxTeacher packs in each branch of
    a ``MultiBranch``), for tools and hooks that score pseudo masks
    against them; no loss sees them."""
    if isinstance(pipeline, dict):
        out = {k: eval_mask_pipeline(v) for k, v in pipeline.items()}
        if out.get('type') == 'LoadAnnotations':
            out['with_mask'] = True
        elif out.get('type') == 'PackDetInputs':
            out['type'] = 'PackDetInputsWithEvalMasks'
        return type(pipeline)(out)
    if isinstance(pipeline, (list, tuple)):
        return type(pipeline)(eval_mask_pipeline(p) for p in pipeline)
    return pipeline
