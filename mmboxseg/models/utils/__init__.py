# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_supervision import (color_similarity, downsample_uint8_images,
                              masks_to_boxes, strided_box_masks,
                              strided_image_masks)
from .color_space import rgb_to_lab
from .dense_correspondence import (cost_volume, geometric_term, mask_marginals,
                                   pass_message, relu_l2_normalise, sinkhorn,
                                   solve_correspondence, transfer_masks,
                                   window_mask)
from .frozen_copy import freeze_as_buffers
from .mean_field import contrast_sensitive_kernel, mean_field, quantise
from .memory_bank import MemoryBank
from .object_memory_bank import ObjectMemoryBank
from .proxy_masks import (merge_smaller_first, paste_crop_probs,
                          proxy_box_agreement)
from .pseudo_mask_assignment import assign_pseudo_masks, mask_aware_score
from .self_correction import (instance_probability, mask_scores,
                              positive_mask_weights, sim_pseudo_labels)
from .semantic_prototypes import (assign_to_prototypes,
                                  momentum_update_prototypes,
                                  prototype_centroids, semantic_probability,
                                  sinkhorn_knopp)
from .weight_transfer import WeightTransfer

__all__ = [
    'rgb_to_lab', 'strided_box_masks', 'masks_to_boxes', 'strided_image_masks',
    'color_similarity', 'downsample_uint8_images', 'freeze_as_buffers',
    'assign_pseudo_masks', 'mask_aware_score', 'MemoryBank',
    'positive_mask_weights', 'instance_probability', 'sim_pseudo_labels',
    'mask_scores', 'sinkhorn_knopp', 'assign_to_prototypes',
    'prototype_centroids', 'momentum_update_prototypes',
    'semantic_probability', 'cost_volume', 'geometric_term', 'mask_marginals',
    'pass_message', 'relu_l2_normalise', 'sinkhorn', 'solve_correspondence',
    'transfer_masks', 'window_mask', 'contrast_sensitive_kernel', 'mean_field',
    'quantise', 'ObjectMemoryBank', 'WeightTransfer', 'merge_smaller_first',
    'paste_crop_probs', 'proxy_box_agreement'
]
