# SIM (Li et al., CVPR 2023) pieces that every SIM config adds to the BoxInst
# config it inherits. Values from the paper (Sec. 4.1) and the public code
# (lslrh/SIM, Base-sim.yaml and hard-coded values); each component's
# docstring says where the two differ and which one is followed.

# Prototypes (Eqs. 1-5), self-correction (Eqs. 6-7) and the losses of
# Eqs. 8-9; num_classes is the data set's.
sim_mask_head = dict(
    type='SIMMaskHead',
    num_classes=80,
    num_prototypes=10,
    prototype_momentum=0.999,
    sinkhorn_epsilon=0.05,
    sinkhorn_iterations=3,
    assignment='argmax',
    semantic_tau=0.1,  # Sec. 4.1 (the code and Table 8: 1.0; see README)
    iou_mu=5.0,
    alpha=0.5,
    tau_high=0.7,
    tau_low=0.4,
    prototype_pos_thr=0.7,
    pseudo_start_iters=10000,
    loss_pseudo=dict(type='WeightedBCEDiceLoss', loss_weight=0.5),
    loss_paste=dict(type='WeightedBCEDiceLoss', loss_weight=1.0))

# Online weakly-supervised copy-paste (Sec. 3.3), run by the preprocessor
sim_copy_paste = dict(
    type='WeakCopyPaste',
    prob=0.5,
    select_ratio=0.5,
    min_select=1,
    max_select=3,
    score_power=3.0,
    mask_thr=0.7)

# What a SIM config merges into the BoxInst model it inherits
sim_model = dict(
    type='SIM',
    inference_with='student',
    data_preprocessor=dict(
        type='CopyPasteBoxSupDataPreprocessor', copy_paste=sim_copy_paste),
    mask_head=sim_mask_head)

# Momentum encoder: copied from the student at the first step, then
# theta' <- 0.9999 theta' + 0.0001 theta before every step; BN statistics
# are copied (the code averages parameters only).
ema_teacher_hook = dict(
    type='EMATeacherHook',
    momentum=0.9999,
    ramp=False,
    start_iter=1,
    buffers='copy',
    update='before_step')
# The copy-paste bank: 100 recent images (the paper; the code: 50)
memory_bank_hook = dict(
    type='MemoryBankHook',
    bank=dict(type='MemoryBank', length=100, max_instances=100),
    save_in_checkpoint=True)
sim_hooks = [ema_teacher_hook, memory_bank_hook]
