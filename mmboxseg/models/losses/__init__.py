# Copyright (c) mmboxseg contributors. All rights reserved.
from .box_projection_loss import BoxProjectionLoss, projection_dice
from .dense_contrastive_loss import DenseContrastiveLoss
from .mil_bag_loss import MILBagLoss, row_column_bags
from .neighbour_smoothness_loss import NeighbourSmoothnessLoss
from .noise_reduced_affinity_loss import (NoiseReducedAffinityLoss,
                                          pseudo_mask_affinity)
from .pairwise_affinity_loss import (PairwiseAffinityLoss,
                                     pairwise_neg_log_same_prob)
from .sim_mask_focal_loss import SIMMaskFocalLoss
from .weighted_bce_dice_loss import WeightedBCEDiceLoss

__all__ = [
    'BoxProjectionLoss', 'PairwiseAffinityLoss', 'projection_dice',
    'pairwise_neg_log_same_prob', 'NoiseReducedAffinityLoss',
    'pseudo_mask_affinity', 'WeightedBCEDiceLoss', 'DenseContrastiveLoss',
    'MILBagLoss', 'row_column_bags', 'NeighbourSmoothnessLoss',
    'SIMMaskFocalLoss'
]
