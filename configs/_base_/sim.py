# SIM (Li et al., CVPR 2023) pieces that every SIM config adds to the BoxInst
# config it inherits. Values are the public code's (lslrh/SIM,
# configs/SIM/Base-sim.yaml and the values hard-coded in
# adet/modeling/condinst/{dynamic_mask_head,condinst,copypaste}.py and
# adet/utils/sinkhorn.py); where the paper's text differs, the `_paper-text`
# configs set the paper's value (configs/sim/README.md, fidelity table).

# Prototypes (Eqs. 1-5), self-correction (Eqs. 6-7), the pairwise term with
# the momentum encoder's feature affinity and the losses of Eqs. 8-9;
# num_classes is the data set's. The iteration-based numbers are keys, so
# that short schedules can scale them.
sim_mask_head = dict(
    type='SIMMaskHead',
    num_classes=80,
    num_prototypes=10,  # Base-sim.yaml NUM_PROTO
    prototype_momentum=0.999,
    sinkhorn_epsilon=0.05,
    sinkhorn_iterations=3,
    assignment='gumbel',  # gumbel_softmax(tau 0.5, hard) after Sinkhorn
    gumbel_tau=0.5,
    centroid='l2',  # F = l2n(Q^T c)
    prototype_pixels='proposal',
    feature_upsample='bilinear',
    semantic_tau=1.0,  # no temperature in the code (paper Sec. 4.1: 0.1)
    iou_mu=0.0,  # plain mean over the positives (paper: 5)
    alpha=0.5,
    tau_high='adaptive',  # per ground truth, clamped to [0.7, 0.8]
    tau_high_range=(0.7, 0.8),
    tau_low=0.4,  # paper Table 7: 0.3
    prototype_pos_thr=0.7,
    pairwise_color_thresh=0.1,  # Base-sim.yaml COLOR_THRESH, on S_lab*S_feat
    pairwise_feat_affinity=True,
    pseudo_start_iters=10000,  # dynamic_mask_head.py: self._iter > 10000
    pseudo_ramp_iters=270000,  # min(t / 270000, 1), in every schedule
    paste_source='instance',
    paste_score_thr=0.7,
    paste_norm='all',
    loss_pseudo=dict(type='SIMMaskFocalLoss', loss_weight=0.3),
    loss_paste=dict(type='SIMMaskFocalLoss', dice_weight=1.0, loss_weight=1.0))

# Online weakly-supervised copy-paste (Sec. 3.3), run by the preprocessor
sim_copy_paste = dict(
    type='WeakCopyPaste',
    prob=0.5,
    prob_per='batch',
    select_ratio=0.5,
    min_select=1,
    max_select=3,
    score_power=3.0,
    replacement=True,
    occlude_pastes=False,
    mask_thr=0.7)

# What a SIM config merges into the BoxInst model it inherits
sim_model = dict(
    type='SIM',
    inference_with='student',
    momentum_head_input='student',  # the EMA FCOS head on student features
    data_preprocessor=dict(
        type='CopyPasteBoxSupDataPreprocessor', copy_paste=sim_copy_paste),
    mask_head=sim_mask_head)

# Momentum encoder: copied from the student at the first step, then
# theta' <- 0.9999 theta' + 0.0001 theta before every step; BN statistics
# are copied (the code averages parameters only and copies buffers).
ema_teacher_hook = dict(
    type='EMATeacherHook',
    momentum=0.9999,
    ramp=False,
    start_iter=1,
    buffers='copy',
    update='before_step')
# The copy-paste bank: 50 recent images (Base-sim.yaml LENGTH; paper: 100)
memory_bank_hook = dict(
    type='MemoryBankHook',
    bank=dict(type='MemoryBank', length=50, max_instances=100),
    save_in_checkpoint=True)
sim_hooks = [ema_teacher_hook, memory_bank_hook]

# The paper's text where it differs from the code (the `_paper-text`
# configs merge these into a SIM config's model and hooks)
sim_paper_mask_head = dict(
    assignment='argmax',  # Eq. 5: 1(Q_il = 1)
    centroid='mean',  # Eq. 5
    prototype_pixels='unique',  # the N_c pixels of class c
    semantic_tau=0.1,  # Sec. 4.1
    iou_mu=5.0,  # Sec. 4.1, Table 6
    tau_high=0.7,  # Table 7 (the default row, 32.2 AP)
    tau_low=0.3,
    pairwise_color_thresh=0.3,  # BoxInst's L_lowlevel, colour only
    pairwise_feat_affinity=False,
    pseudo_ramp_iters=0,  # lambda_1 from the end of the warm-up
    paste_source='prob',  # Eq. 11: M_prob over the pseudo mask
    paste_norm='pasted',
    loss_pseudo=dict(
        _delete_=True, type='WeightedBCEDiceLoss', loss_weight=0.5),
    loss_paste=dict(
        _delete_=True, type='WeightedBCEDiceLoss', loss_weight=1.0))
sim_paper_copy_paste = dict(
    select_ratio=0.25,  # "a quarter of the instances"
    replacement=False,
    occlude_pastes=True)  # "update the masks ... of occluded objects"
sim_paper_memory_bank_hook = dict(
    memory_bank_hook,
    bank=dict(type='MemoryBank', length=100, max_instances=100))
