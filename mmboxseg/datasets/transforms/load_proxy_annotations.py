# Copyright (c) mmboxseg contributors. All rights reserved.
"""Loading and packing BoxCaseg's proxy masks with their box agreement.

``tools/boxcaseg/generate_proxy_masks.py`` writes a COCO file whose
annotations carry a proxy ``segmentation`` and a float
``proxy_box_agreement`` (IoU of the proxy mask's tight box with the
ground-truth box).  The train pipeline of a Proxy Mask R-CNN is::

    BoxCocoDataset(extra_instance_fields=['proxy_box_agreement'], ...)
    LoadImageFromFile -> LoadProxyAnnotations -> Resize -> RandomFlip
        -> PackProxyDetInputs

and :class:`~mmboxseg.models.roi_heads.ProxyFCNMaskHead` reads
``data_sample.gt_instances.agreement``.

``gt_mask_agreement`` is one value per instance, aligned with
``gt_bboxes``.  mmdet's transforms that drop instances (``RandomCrop``,
``FilterAnnotations``, ``MinIoURandomCrop``, ``RandomAffine``, ``Mosaic``,
``MixUp``, ``CopyPaste`` ...) filter a fixed set of keys and do not know
this one, so they are not supported between the two transforms; instead
of training on misaligned agreements :class:`PackProxyDetInputs` raises
when the counts differ.  Flips, resizes and colour transforms keep the
instances and are fine.
"""
import numpy as np
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs

from mmboxseg.registry import TRANSFORMS

PROXY_TOOL = 'tools/boxcaseg/generate_proxy_masks.py'


class MissingAgreementError(KeyError):
    """An instance without its proxy box agreement.

    A ``KeyError`` whose message is printed as written (``KeyError`` quotes
    its argument).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


@TRANSFORMS.register_module()
class LoadProxyAnnotations(LoadAnnotations):
    """mmdet's :class:`LoadAnnotations` plus the proxy box agreement.

    Loads boxes, labels and masks as ``LoadAnnotations`` (with
    ``with_bbox=True, with_mask=True`` by default) and adds

    - ``gt_mask_agreement`` (np.ndarray): float32 ``(N,)``, the
      ``agreement_key`` field of each of the ``N`` instances of
      ``results['instances']``, in the order of ``gt_bboxes`` (ignored
      instances included; :class:`PackProxyDetInputs` splits them as it
      splits the boxes).

    The instance dicts get the field from the annotation file through
    ``BoxCocoDataset(extra_instance_fields=[agreement_key])``.

    Required Keys: instances (with ``agreement_key``), ori_shape for masks.
    Added Keys: gt_bboxes, gt_bboxes_labels, gt_masks, gt_ignore_flags,
    gt_mask_agreement.

    Args:
        with_mask (bool): Load the proxy masks. Defaults to True.
        agreement_key (str): Instance field with the agreement.
            Defaults to ``'proxy_box_agreement'``.
        **kwargs: :class:`LoadAnnotations` arguments.
    """

    def __init__(self,
                 with_mask: bool = True,
                 agreement_key: str = 'proxy_box_agreement',
                 **kwargs) -> None:
        super().__init__(with_mask=with_mask, **kwargs)
        self.agreement_key = agreement_key

    def _load_agreement(self, results: dict) -> None:
        values = []
        for i, instance in enumerate(results.get('instances', [])):
            if self.agreement_key not in instance:
                raise MissingAgreementError(
                    f'LoadProxyAnnotations: instance {i} of '
                    f'{results.get("img_path", "<unknown image>")} has no '
                    f'`{self.agreement_key}`. Train on a proxy annotation '
                    f'file written by {PROXY_TOOL} and build the data set '
                    "with BoxCocoDataset(extra_instance_fields="
                    f"['{self.agreement_key}'])")
            value = instance[self.agreement_key]
            try:
                values.append(float(value))
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f'LoadProxyAnnotations: `{self.agreement_key}` of '
                    f'instance {i} of {results.get("img_path")} must be a '
                    f'number, got {value!r}') from e
        results['gt_mask_agreement'] = np.array(values, dtype=np.float32)

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        self._load_agreement(results)
        return results

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f", agreement_key='{self.agreement_key}')")


@TRANSFORMS.register_module()
class PackProxyDetInputs(PackDetInputs):
    """mmdet's :class:`PackDetInputs` that also packs
    ``gt_mask_agreement`` as ``gt_instances.agreement``.

    Like the labels, the agreement is split by ``gt_ignore_flags``, so
    ``ignored_instances`` (crowd boxes) carry theirs as well.  Raises
    ``ValueError`` when ``gt_mask_agreement`` and ``gt_bboxes`` differ in
    length: a transform between loading and packing dropped instances
    without dropping their agreement (see the module docstring).
    """
    mapping_table = dict(
        PackDetInputs.mapping_table, gt_mask_agreement='agreement')

    def transform(self, results: dict) -> dict:
        if 'gt_mask_agreement' in results and 'gt_bboxes' in results:
            num_boxes = len(results['gt_bboxes'])
            num_agreements = len(results['gt_mask_agreement'])
            if num_boxes != num_agreements:
                raise ValueError(
                    f'PackProxyDetInputs: {results.get("img_path")} has '
                    f'{num_boxes} gt_bboxes but {num_agreements} '
                    'gt_mask_agreement values; a transform after '
                    'LoadProxyAnnotations dropped instances without '
                    'dropping their agreement (RandomCrop, '
                    'FilterAnnotations, RandomAffine, Mosaic ... are not '
                    'supported in a proxy pipeline)')
        return super().transform(results)
