# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.utils import aligned_bilinear, multi_apply
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet.utils import ConfigType, InstanceList
from mmengine import dist
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from mmboxseg.models.utils import (assign_to_prototypes, color_similarity,
                                   instance_probability, mask_scores,
                                   momentum_update_prototypes,
                                   positive_mask_weights, prototype_centroids,
                                   semantic_probability, sim_pseudo_labels,
                                   sinkhorn_knopp, strided_box_masks)
from mmboxseg.models.utils.self_correction import adaptive_high_threshold
from mmboxseg.models.utils.semantic_prototypes import CENTROIDS
from mmboxseg.registry import MODELS
from .box_sup_mask_head import BoxSupMaskHead

ASSIGNMENTS = ('argmax', 'gumbel')
UPSAMPLES = ('bilinear', 'aligned')
PROTOTYPE_PIXELS = ('proposal', 'unique')
PASTE_SOURCES = ('instance', 'prob')
PASTE_NORMS = ('all', 'pasted')


@MODELS.register_module()
class SIMMaskHead(BoxSupMaskHead):
    """BoxInst mask head plus SIM's semantic-aware pseudo masks (Li et al.,
    "SIM", CVPR 2023): prototypes, self-correction, pseudo-mask and paste
    losses. Defaults are the public code's (lslrh/SIM,
    ``adet/modeling/condinst/dynamic_mask_head.py``, "the code" below);
    where the paper's text differs the option is named, and
    ``configs/sim/*_paper-text.py`` sets the paper's values
    (``configs/sim/README.md`` has the full table).

    For every sampled positive proposal ``k`` of ground truth ``g`` the
    :class:`mmboxseg.models.detectors.SIM` detector attaches the momentum
    encoder's dynamic-conv parameters, box and ``[D, H/8, W/8]`` mask
    features ``z'``; the student's are ``z``. ``up(.)`` is the x2 bilinear
    up-sampling of the code (``F.interpolate``, ``align_corners=False``;
    ``feature_upsample='aligned'``: the dynamic head's ``aligned_bilinear``)
    to the mask grid ``[H/4, W/4]``. Then, per image:

    - pairwise term (BoxInst Eq. 8 with the code's feature affinity,
      ``pairwise_feat_affinity=True``): edge weight
      ``1{S_lab * exp(-||up(z')_i - up(z')_j||_2) >= 0.1} * box``
      (``pairwise_color_thresh`` 0.1, the code's ``COLOR_THRESH``; BoxInst
      and the paper: colour only, 0.3);
    - ``M_I`` (Eq. 6): the mean of the momentum encoder's mask
      probabilities over the positives of ``g`` (``iou_mu = 0``: the
      code's ``scatter_mean``; the paper weights them by
      ``exp(mu * IoU)``, ``mu`` 5);
    - ``M_S`` (Eq. 1): ``sigmoid(max_l <l2n(up(z'))_i, p_l^c> / tau)``
      with ``tau = 1`` (the code, no temperature, and the paper's Table 8
      default row; the paper's Sec. 4.1 says 0.1), ``[G, H/4, W/4]``;
    - ``M_prob = (1 - alpha) M_S + alpha M_I`` (Eq. 7, ``alpha`` 0.5); pseudo
      mask ``M_prob > tau_high`` and weight map ``W`` (``M_prob > tau_high``
      or ``< tau_low``), inside the box; ``tau_low`` 0.4 (paper Table 7:
      0.3); ``tau_high='adaptive'``: per ground truth the
      ``(n_pos + 1)``-th largest ``M_prob`` in its box, ``n_pos`` the
      number of box pixels with ``M_I > 0.7``, clamped to ``[0.7, 0.8]``
      (:func:`adaptive_high_threshold`; the paper: a fixed 0.7);
    - prototypes (Eqs. 2-5), in every step: the pixels with
      ``M_I > prototype_pos_thr`` (0.7) inside the box, once per sampled
      proposal (``prototype_pixels='proposal'``, the code;
      ``'unique'`` takes each pixel of a class once) are assigned to the
      ``L = 10`` prototypes of the class by Sinkhorn-Knopp (``eps`` 0.05,
      3 iterations) on ``<l2n(up(z')), p>`` with the prototypes of the
      step's start, then Gumbel sampling (``assignment='gumbel'``,
      ``gumbel_tau`` 0.5, the code: a one-hot draw from
      ``softmax(N Q_i)``; ``'argmax'``: the paper's ``1(Q = 1)``); each
      used prototype moves by Eq. 4 (``gamma`` 0.999)
      towards ``l2n(sum of its pixels' l2n(up(z)))`` (``centroid='l2'``,
      the code; ``'mean'``: Eq. 5), image by image, then is
      re-normalised; then the prototypes are averaged over all ranks.

    Losses, from iteration ``pseudo_start_iters`` (10k) on:

    - ``loss_pseudo`` (Eq. 8): ``min(t / pseudo_ramp_iters, 1) *
      loss_pseudo(p, M^, W)`` over the sampled proposals. Default: the
      code's focal loss on probabilities, ``0.3 * sum(focal) / (sum(W) +
      1)`` (:class:`SIMMaskFocalLoss`) with the ramp ``t / 270k`` (the code
      ties it to 270k iterations in every schedule). A per-proposal loss
      (:class:`WeightedBCEDiceLoss`, the paper's BCE + dice with
      ``lambda_1 = 0.5``) is averaged over the proposals with a non-empty
      weight map;
    - ``loss_paste`` (Eq. 9), on the proposals of *pasted* ground truths
      (``gt_instances.pasted``) against their visible pasted pseudo masks,
      on the whole mask map: default the code's focal + weighted dice, the
      dice averaged over *all* sampled proposals (:class:`SIMMaskFocalLoss`
      with ``dice_weight=1``); a per-proposal loss is summed and divided by
      the number of all sampled proposals (``paste_norm='all'``, the
      code's normaliser) or of the pasted ones (``'pasted'``).

    The head writes into each image's ``gt_instances`` what the detector
    pushes into the memory bank, ``[G, H/4, W/4]`` ``sim_prob`` inside the
    box, ``[G]`` ``sim_scores`` and ``[G]`` ``sim_valid``. With
    ``paste_source='instance'`` (the code) ``sim_prob`` is ``M_I`` (its
    copy-paste mask is ``up4(M_I) > 0.7`` in the box), the score is
    ``sum(up4(M_I) m) / (|m| + 1)`` on that full-resolution mask ``m``
    (``paste_score_thr`` 0.7) and every ground truth with a positive is
    valid; with ``'prob'`` (the paper's Eq. 11) ``sim_prob`` is ``M_prob``,
    the score its mean over the pseudo mask, and only non-empty pseudo
    masks are valid.

    In every training step, warm-up included (the pseudo masks are computed
    from the first step on), it also keeps the pseudo masks in
    ``last_pseudo_masks`` for
    :class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook` (through the
    detector's ``last_pseudo_masks``): one dict per image of the batch, in
    batch order, with ``masks`` ``[G, H/4, W/4]`` bool (one row per ground
    truth), ``valid`` ``[G]`` (non-empty pseudo mask), ``eval_masks`` (the
    image's ``gt_instances.eval_masks`` or None) and ``stride``
    (``mask_out_stride``). An image without sampled positives has empty
    masks and no valid row. No loss reads ``eval_masks``.

    Args:
        num_classes (int): Number of classes ``C``.
        num_prototypes (int): ``L`` per class (10).
        prototype_momentum (float): ``gamma`` of Eq. 4.
        sinkhorn_epsilon (float): ``eps`` of Eq. 2.
        sinkhorn_iterations (int): Sinkhorn-Knopp iterations.
        assignment (str): ``'gumbel'`` or ``'argmax'``.
        gumbel_tau (float): Gumbel temperature (``assignment='gumbel'``).
        centroid (str): ``'l2'`` or ``'mean'``.
        prototype_pixels (str): ``'proposal'`` or ``'unique'``.
        feature_upsample (str): ``'bilinear'`` or ``'aligned'``.
        semantic_tau (float): ``tau`` of Eq. 1.
        iou_mu (float): ``mu`` of Eq. 6.
        alpha (float): Modulation of Eq. 7.
        tau_high (float | str): Pseudo-mask threshold or ``'adaptive'``.
        tau_high_range (tuple[float]): Clamp of the adaptive threshold.
        tau_low (float): Background threshold.
        prototype_pos_thr (float): ``M_I`` threshold of prototype pixels
            (and of ``n_pos``).
        pairwise_color_thresh (float): Edge threshold of the pairwise term.
        pairwise_feat_affinity (bool): Multiply the colour similarity by
            the momentum encoder's feature affinity.
        pseudo_start_iters (int): The two SIM losses are on for
            ``t > pseudo_start_iters``.
        pseudo_ramp_iters (int): Ramp of ``loss_pseudo``; 0: none.
        paste_source (str): ``'instance'`` or ``'prob'``.
        paste_score_thr (float): Paste-mask threshold of the scores
            (``paste_source='instance'``).
        paste_norm (str): ``'all'`` or ``'pasted'`` (per-proposal losses).
        loss_pseudo (dict, optional): Eq. 8 loss; None disables it (the
            "without L_pseudo" ablation).
        loss_paste (dict): Eq. 9 loss.
        sync_check_interval (int): Every this many prototype updates,
            all-gather a fingerprint of the prototypes and raise if two
            ranks differ (0: never).
        gumbel_seed (int): Seed of the Gumbel draws' generator, whose state
            is the buffer ``gumbel_rng_state`` (saved in checkpoints, so a
            resumed run draws what an uninterrupted one would; under DDP
            the buffers are broadcast from rank 0, so all ranks draw the
            same noise).
        **kwargs: :class:`BoxSupMaskHead` arguments.
    """

    def __init__(self,
                 *args,
                 num_classes: int,
                 num_prototypes: int = 10,
                 prototype_momentum: float = 0.999,
                 sinkhorn_epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3,
                 assignment: str = 'gumbel',
                 gumbel_tau: float = 0.5,
                 centroid: str = 'l2',
                 prototype_pixels: str = 'proposal',
                 feature_upsample: str = 'bilinear',
                 semantic_tau: float = 1.0,
                 iou_mu: float = 0.0,
                 alpha: float = 0.5,
                 tau_high: Union[float, str] = 'adaptive',
                 tau_high_range: Tuple[float, float] = (0.7, 0.8),
                 tau_low: float = 0.4,
                 prototype_pos_thr: float = 0.7,
                 pairwise_color_thresh: float = 0.1,
                 pairwise_feat_affinity: bool = True,
                 pseudo_start_iters: int = 10000,
                 pseudo_ramp_iters: int = 270000,
                 paste_source: str = 'instance',
                 paste_score_thr: float = 0.7,
                 paste_norm: str = 'all',
                 loss_pseudo: Optional[ConfigType] = dict(
                     type='SIMMaskFocalLoss', loss_weight=0.3),
                 loss_paste: ConfigType = dict(
                     type='SIMMaskFocalLoss', dice_weight=1.0,
                     loss_weight=1.0),
                 sync_check_interval: int = 0,
                 gumbel_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(
            *args, pairwise_color_thresh=pairwise_color_thresh, **kwargs)
        if self.supervision == 'mask':
            raise ValueError("SIMMaskHead needs supervision='box' or 'mixed'")
        choices = dict(
            assignment=(assignment, ASSIGNMENTS),
            centroid=(centroid, CENTROIDS),
            prototype_pixels=(prototype_pixels, PROTOTYPE_PIXELS),
            feature_upsample=(feature_upsample, UPSAMPLES),
            paste_source=(paste_source, PASTE_SOURCES),
            paste_norm=(paste_norm, PASTE_NORMS))
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f'SIMMaskHead: {name} must be one of '
                                 f'{allowed}, got {value!r}')
        if isinstance(tau_high, str):
            if tau_high != 'adaptive':
                raise ValueError("SIMMaskHead: tau_high must be a number or "
                                 f"'adaptive', got {tau_high!r}")
            low, high = tau_high_range
            if not tau_low <= low <= high <= 1.0:
                raise ValueError('SIMMaskHead: need tau_low <= '
                                 'tau_high_range[0] <= tau_high_range[1] <= '
                                 f'1, got {tau_low}, {tau_high_range}')
        elif not 0.0 <= tau_low <= tau_high <= 1.0:
            raise ValueError('SIMMaskHead: need 0 <= tau_low <= tau_high <= '
                             f'1, got {tau_low}, {tau_high}')
        positive = dict(
            semantic_tau=semantic_tau,
            sinkhorn_epsilon=sinkhorn_epsilon,
            num_prototypes=num_prototypes,
            sinkhorn_iterations=sinkhorn_iterations)
        bad = {k: v for k, v in positive.items() if not v > 0}
        if bad:
            raise ValueError(f'SIMMaskHead: {bad} must be > 0')
        if not 0.0 <= prototype_momentum < 1.0:
            raise ValueError('SIMMaskHead: prototype_momentum must be in '
                             f'[0, 1), got {prototype_momentum}')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'SIMMaskHead: alpha must be in [0, 1], got '
                             f'{alpha}')
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes
        self.prototype_momentum = prototype_momentum
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.assignment = assignment
        self.gumbel_tau = gumbel_tau
        self.centroid = centroid
        self.prototype_pixels = prototype_pixels
        self.feature_upsample = feature_upsample
        self.semantic_tau = semantic_tau
        self.iou_mu = iou_mu
        self.alpha = alpha
        self.tau_high = tau_high
        self.tau_high_range = tuple(tau_high_range)
        self.tau_low = tau_low
        self.prototype_pos_thr = prototype_pos_thr
        self.pairwise_feat_affinity = pairwise_feat_affinity
        self.pseudo_start_iters = pseudo_start_iters
        self.pseudo_ramp_iters = pseudo_ramp_iters
        self.paste_source = paste_source
        self.paste_score_thr = paste_score_thr
        self.paste_norm = paste_norm
        self.loss_pseudo = MODELS.build(loss_pseudo) \
            if loss_pseudo is not None else None
        self.loss_paste = MODELS.build(loss_paste)
        self.sync_check_interval = sync_check_interval
        dim = self.mask_feature_head.out_channels
        prototypes = torch.empty(num_classes, num_prototypes, dim)
        torch.nn.init.trunc_normal_(prototypes, std=0.02)
        self.register_buffer('prototypes', F.normalize(prototypes, dim=-1))
        self.register_buffer('prototype_updates',
                             torch.zeros((), dtype=torch.long))
        # the Gumbel draws' RNG: its state is a buffer, so checkpoints
        # (and --resume) carry it; the code draws from the global RNG
        self._gumbel_generator = torch.Generator().manual_seed(gumbel_seed)
        self.register_buffer('gumbel_rng_state',
                             self._gumbel_generator.get_state())
        # per-image pseudo masks of the last training step (see above)
        self.last_pseudo_masks = []
        self._batch_gt_instances = None

    # -- features -----------------------------------------------------------
    def forward(self, x: tuple, positive_infos: InstanceList) -> tuple:
        """CondInst's forward; in training the per-image mask features are
        also kept, detached, in ``positive_infos`` metainfo
        (``student_mask_feats``) for the prototype update."""
        mask_feats = self.mask_feature_head(x)
        if self.training:
            # detached: metainfo is deep-copied when infos are indexed
            for feat, info in zip(mask_feats, positive_infos):
                info.set_metainfo(dict(student_mask_feats=feat.detach()))
        return multi_apply(self.forward_single, mask_feats, positive_infos)

    def upsample(self, feats: Tensor) -> Tensor:
        """``[D, h, w]`` stride-8 features to the mask grid ``[D, H/4,
        W/4]`` (``feature_upsample``; the code: ``F.interpolate(x,
        scale_factor=2, mode='bilinear', align_corners=False)``)."""
        factor = int(self.mask_feat_stride / self.mask_out_stride)
        if factor == 1:
            return feats
        if self.feature_upsample == 'aligned':
            return aligned_bilinear(feats[None], factor)[0]
        return F.interpolate(
            feats[None],
            scale_factor=factor,
            mode='bilinear',
            align_corners=False)[0]

    def to_mask_stride(self, feats: Tensor) -> Tensor:
        """:meth:`upsample`, then L2-normalised over ``D``."""
        return F.normalize(self.upsample(feats), dim=0)

    def pseudo_active(self) -> bool:
        return int(self._iter) > self.pseudo_start_iters

    def pseudo_ramp(self) -> float:
        """``min(t / pseudo_ramp_iters, 1)`` (the code: ``t / 270000``)."""
        if self.pseudo_ramp_iters <= 0:
            return 1.0
        return min(float(self._iter) / self.pseudo_ramp_iters, 1.0)

    # -- pairwise term with feature affinity --------------------------------
    @torch.no_grad()
    def feature_affinity(self, teacher_feats: Tensor,
                         out_hw: Tuple[int, int]) -> Tensor:
        """The code's ``get_feat_similarity``: ``exp(-||f_i - f_j||_2)`` of
        the momentum encoder's up-sampled, *un-normalised* mask features
        ``f = up(z')`` over the pairwise loss's neighbourhood.

        Args:
            teacher_feats (Tensor): ``[D, H/8, W/8]``.
            out_hw (tuple[int]): The mask grid ``(H/4, W/4)``.

        Returns:
            Tensor: ``[k*k - 1, H/4, W/4]`` in ``(0, 1]`` (0 for neighbours
            outside the map; the colour similarity is 0 there too).
        """
        feats = self.upsample(teacher_feats)
        h, w = out_hw
        if feats.shape[-2] < h or feats.shape[-1] < w:
            raise ValueError(f'SIMMaskHead: up-sampled mask features '
                             f'{tuple(feats.shape[-2:])} do not cover the '
                             f'mask grid {out_hw}')
        feats = feats[:, :h, :w]
        ones = feats.new_ones((1, h, w))
        return color_similarity(
            feats[None],
            ones,
            self.loss_pairwise.kernel_size,
            self.loss_pairwise.dilation,
            theta=1.0)[0]

    # -- pseudo labels ------------------------------------------------------
    @torch.no_grad()
    def image_pseudo_labels(
            self,
            gt_instances: InstanceData,
            gt_inds: Tensor,
            valid: Tensor,
            info: InstanceData,
            prototypes: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Self-corrected pseudo labels of one image's ground truths.

        Args:
            gt_instances (InstanceData): ``G`` ground truths with
                ``bboxes``, ``labels`` and ``box_masks`` ``[G, H, W]``.
            gt_inds (Tensor): ``[n]`` ground truth of each sampled proposal.
            valid (Tensor): ``[H, W]`` bool.
            info (InstanceData): The ``n`` sampled positives with
                ``points``, ``strides``, ``teacher_param_preds`` and
                ``teacher_bboxes``; metainfo ``teacher_mask_feats``.
            prototypes (Tensor, optional): ``[C, L, D]`` prototypes of
                Eq. 1 (the code uses those of the step's start for every
                image); None: the current ones.

        Returns:
            tuple[Tensor]: ``M_prob``, pseudo masks, weights (``[G, H, W]``),
            ``M_I`` ``[G, H, W]`` and ``[G]`` bool (has a positive).
        """
        fields = ('teacher_param_preds', 'teacher_bboxes')
        missing = [k for k in fields if k not in info]
        if 'teacher_mask_feats' not in info.metainfo:
            missing.append('teacher_mask_feats')
        if missing:
            raise KeyError(f'SIMMaskHead: positive infos lack {missing}; '
                           'they are attached by the SIM detector')
        if prototypes is None:
            prototypes = self.prototypes
        teacher_feats = info.metainfo['teacher_mask_feats']
        teacher_info = InstanceData(
            param_preds=info.teacher_param_preds,
            points=info.points,
            strides=info.strides)
        # the dynamic head has no weights: the momentum encoder's mask head
        # is this head run on its features and parameters
        probs = self.forward_single(teacher_feats, teacher_info)[0].sigmoid()
        num_gts = len(gt_instances)
        gt_boxes = get_box_tensor(gt_instances.bboxes)
        ious = bbox_overlaps(
            info.teacher_bboxes, gt_boxes[gt_inds], is_aligned=True)
        weights = positive_mask_weights(ious, gt_inds, num_gts, self.iou_mu)
        inst, has = instance_probability(probs, weights, gt_inds, num_gts)
        feats = self.to_mask_stride(teacher_feats)
        semantic = semantic_probability(feats, prototypes[gt_instances.labels],
                                        self.semantic_tau)
        box_masks = gt_instances.box_masks
        tau_high = self.tau_high
        if tau_high == 'adaptive':
            inside = box_masks & valid[None]
            num_pos = ((inst > self.prototype_pos_thr) & inside).flatten(1)
            mixed = (1.0 - self.alpha) * semantic + self.alpha * inst
            tau_high = adaptive_high_threshold(mixed, inside,
                                               num_pos.sum(dim=1),
                                               *self.tau_high_range)
        prob, pseudo, weight = sim_pseudo_labels(semantic, inst, box_masks,
                                                 valid, self.alpha, tau_high,
                                                 self.tau_low)
        pseudo &= has[:, None, None]
        weight &= has[:, None, None]
        return prob, pseudo, weight, inst, has

    @torch.no_grad()
    def update_prototypes(self,
                          gt_instances: InstanceData,
                          inst: Tensor,
                          has: Tensor,
                          valid: Tensor,
                          info: InstanceData,
                          gt_inds: Optional[Tensor] = None,
                          prototypes: Optional[Tensor] = None,
                          generator: Optional[torch.Generator] = None) -> None:
        """Eqs. 2-5 for the classes of one image (in place, this rank).

        Args:
            gt_instances (InstanceData): The image's ground truths.
            inst (Tensor): ``[G, H, W]`` ``M_I``.
            has (Tensor): ``[G]`` bool.
            valid (Tensor): ``[H, W]`` bool.
            info (InstanceData): Positive infos with the metainfo
                ``teacher_mask_feats`` and ``student_mask_feats``.
            gt_inds (Tensor, optional): ``[n]`` ground truth of each sampled
                proposal; with ``prototype_pixels='proposal'`` a ground
                truth's pixels enter once per proposal (the code); None
                or ``'unique'``: each pixel of a class once.
            prototypes (Tensor, optional): ``[C, L, D]`` prototypes the
                Sinkhorn scores are computed with (the step's start in the
                code); None: the current ones.
            generator (torch.Generator, optional): RNG of the Gumbel
                draws; None: the global one.
        """
        pos = (inst > self.prototype_pos_thr) & gt_instances.box_masks & \
            valid[None] & has[:, None, None]
        if not pos.any():
            return
        if prototypes is None:
            prototypes = self.prototypes
        teacher = self.to_mask_stride(
            info.metainfo['teacher_mask_feats']).flatten(1)
        student = self.to_mask_stride(
            info.metainfo['student_mask_feats']).flatten(1)
        labels = gt_instances.labels
        per_proposal = self.prototype_pixels == 'proposal' and \
            gt_inds is not None
        gumbel = self.gumbel_tau if self.assignment == 'gumbel' else None
        for cls in labels[pos.flatten(1).any(dim=1)].unique().tolist():
            if per_proposal:
                rows = gt_inds[labels[gt_inds] == cls]
                pixels = pos[rows].flatten(1).nonzero()[:, 1]
            else:
                # a pixel inside two boxes of the class counts once
                pixels = pos[labels == cls].any(dim=0).flatten().nonzero()[:,
                                                                           0]
            if pixels.numel() == 0:
                continue
            scores = teacher[:, pixels].t() @ prototypes[cls].t()
            plan = sinkhorn_knopp(scores, self.sinkhorn_epsilon,
                                  self.sinkhorn_iterations)
            assign = assign_to_prototypes(plan, gumbel, generator)
            centroids, counts = prototype_centroids(student[:, pixels].t(),
                                                    assign,
                                                    self.num_prototypes,
                                                    self.centroid)
            self.prototypes[cls] = momentum_update_prototypes(
                self.prototypes[cls], centroids, counts,
                self.prototype_momentum)

    @torch.no_grad()
    def bank_fields(self, gt_instances: InstanceData, prob: Tensor,
                    pseudo: Tensor, inst: Tensor,
                    has: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``sim_prob``, ``sim_scores`` and ``sim_valid`` of one image (see
        ``paste_source`` in the class docstring)."""
        box_masks = gt_instances.box_masks
        if self.paste_source == 'prob':
            return prob * box_masks, mask_scores(
                prob, pseudo), pseudo.flatten(1).any(dim=1)
        source = inst * (box_masks & has[:, None, None])
        stride = self.mask_out_stride
        full = F.interpolate(
            inst[None],
            scale_factor=stride,
            mode='bilinear',
            align_corners=False)[0]
        boxes = get_box_tensor(gt_instances.bboxes)
        paste = (full > self.paste_score_thr) & strided_box_masks(
            boxes, full.shape[-2:], 1) & has[:, None, None]
        return source, mask_scores(full, paste, smooth=1.0), has

    @torch.no_grad()
    def sync_prototypes(self) -> None:
        """Average the prototypes over ranks (a collective: every rank calls
        it once per training step) and optionally check they agree."""
        if dist.get_world_size() > 1:
            dist.all_reduce(self.prototypes, op='mean')
            self.prototypes.copy_(F.normalize(self.prototypes, dim=-1))
        self.prototype_updates += 1
        interval = self.sync_check_interval
        if interval > 0 and int(self.prototype_updates) % interval == 0:
            self.check_prototypes_in_sync()

    def check_prototypes_in_sync(self) -> None:
        world = dist.get_world_size()
        if world == 1:
            return
        weights = torch.arange(
            1, self.prototypes.numel() + 1,
            device=self.prototypes.device).to(torch.float64)
        fingerprint = (self.prototypes.double().flatten() * weights).sum()
        prints = dist.all_gather(fingerprint.reshape(1))
        values = [float(p) for p in prints]
        if any(v != values[0] for v in values):
            raise RuntimeError(
                'SIMMaskHead: prototypes differ across ranks after '
                f'{int(self.prototype_updates)} updates: {values}')
        print_log(
            f'prototypes identical on {world} ranks after '
            f'{int(self.prototype_updates)} updates',
            logger='current')

    # -- losses -------------------------------------------------------------
    def loss_by_feat(self,
                     mask_preds: list,
                     batch_gt_instances: InstanceList,
                     batch_color_similarity: list,
                     positive_infos: InstanceList,
                     batch_image_valid: Optional[list] = None,
                     **kwargs) -> dict:
        """:meth:`BoxSupMaskHead.loss_by_feat`, with the pairwise edges'
        similarity multiplied by :meth:`feature_affinity` (with
        ``pairwise_feat_affinity``, for the images whose positive infos
        carry ``teacher_mask_feats``); keeps the batch's ground truths
        at hand so that :meth:`extra_losses`, which only sees the images
        with sampled positives, records every image."""
        if self.pairwise_feat_affinity:
            products = []
            for sim, info in zip(batch_color_similarity, positive_infos):
                feats = info.metainfo.get('teacher_mask_feats')
                if sim is None or feats is None:
                    products.append(sim)
                    continue
                products.append(sim *
                                self.feature_affinity(feats, sim.shape[-2:]))
            batch_color_similarity = products
        self._batch_gt_instances = batch_gt_instances
        try:
            return super().loss_by_feat(mask_preds, batch_gt_instances,
                                        batch_color_similarity, positive_infos,
                                        batch_image_valid, **kwargs)
        finally:
            self._batch_gt_instances = None

    def record_pseudo_masks(self, pseudo_masks: dict, sampled: list) -> None:
        """Set ``last_pseudo_masks``: one record per image of the batch
        (of the sampled images when called outside :meth:`loss_by_feat`).

        Args:
            pseudo_masks (dict): ``id(gt_instances)`` to the image's
                ``[G, H, W]`` bool pseudo masks; images not in it get empty
                ones.
            sampled (list[tuple]): As :meth:`extra_losses`.
        """
        batch = self._batch_gt_instances
        if batch is None:
            batch = [entry[0] for entry in sampled]
        records = []
        for gt in batch:
            masks = pseudo_masks.get(id(gt))
            if masks is None:
                masks = torch.zeros_like(gt.box_masks, dtype=torch.bool)
            records.append(
                dict(
                    masks=masks,
                    valid=masks.flatten(1).any(dim=1),
                    eval_masks=gt.get('eval_masks'),
                    stride=self.mask_out_stride))
        self.last_pseudo_masks = records

    def extra_losses(self, preds: Optional[Tensor], sampled: list,
                     has_mask: Optional[Tensor], zero: Tensor,
                     neg_log_same: Optional[Tensor]) -> dict:
        """Eqs. 8-9 on the sampled proposals; see the class docstring."""
        losses = dict(
            loss_pseudo=zero, loss_paste=zero, pseudo_fg_fraction=zero)
        if not self.training:
            return losses
        self.last_pseudo_masks = []
        if preds is None:
            self.sync_prototypes()
            self.record_pseudo_masks({}, sampled)
            return losses
        active = self.pseudo_active()
        # the code computes Eq. 1 and the Sinkhorn scores of every image
        # with the prototypes of the step's start
        start_protos = self.prototypes.clone()
        gen = self._gumbel_generator
        gen.set_state(self.gumbel_rng_state.cpu())
        targets, weights, paste_targets, paste_flags = [], [], [], []
        pseudo_area = preds.new_zeros(())
        box_area = preds.new_zeros(())
        pseudo_masks = {}  # for PseudoMaskQualityHook, read by no loss
        for gt, gt_inds, valid, info in sampled:
            if valid is None:
                valid = torch.ones_like(gt.box_masks[0])
            prob, pseudo, weight, inst, has = self.image_pseudo_labels(
                gt, gt_inds, valid, info, start_protos)
            self.update_prototypes(gt, inst, has, valid, info, gt_inds,
                                   start_protos, gen)
            gt.sim_prob, gt.sim_scores, gt.sim_valid = self.bank_fields(
                gt, prob, pseudo, inst, has)
            pseudo_masks[id(gt)] = pseudo
            pseudo_area += pseudo.sum()
            box_area += (gt.box_masks & has[:, None, None]).sum()
            targets.append(pseudo[gt_inds])
            weights.append(weight[gt_inds])
            pasted = gt.get('pasted')
            if pasted is None:
                pasted = torch.zeros_like(has)
            paste_flags.append(pasted[gt_inds])
            paste_masks = gt.get('paste_masks')
            paste_targets.append(
                paste_masks[gt_inds] if paste_masks is not None else torch.
                zeros_like(targets[-1]))
        self.gumbel_rng_state.copy_(gen.get_state())
        self.sync_prototypes()
        self.record_pseudo_masks(pseudo_masks, sampled)
        # logged (not a loss): share of box pixels in the pseudo masks
        losses['pseudo_fg_fraction'] = pseudo_area / box_area.clamp(min=1)
        if not active:
            return losses
        targets, weights = torch.cat(targets), torch.cat(weights)
        if self.loss_pseudo is not None:
            # proposals supervised by a real mask (mixed) take no pseudo loss
            keep = weights.flatten(1).any(dim=1) & ~has_mask
            if keep.any():
                out = self.loss_pseudo(preds[keep], targets[keep],
                                       weights[keep])
                if out.dim() > 0:  # per proposal: mean over N_pos
                    out = out.sum() / keep.sum()
                losses['loss_pseudo'] = out * self.pseudo_ramp()
        paste_flags = torch.cat(paste_flags)
        if paste_flags.any():
            # the code's weights: 1 on the whole map of a pasted proposal's
            # ground truth, 0 for every other proposal
            paste_weights = paste_flags[:, None, None].expand_as(preds)
            out = self.loss_paste(preds, torch.cat(paste_targets),
                                  paste_weights)
            if out.dim() > 0:
                count = paste_flags.numel() if self.paste_norm == 'all' \
                    else paste_flags.sum()
                out = out.sum() / count
            losses['loss_paste'] = out
        return losses
