# SIM, R-50-FPN, COCO 1x, with the paper's text where it differs from the
# public code (configs/sim/README.md, fidelity table): tau 0.1 in Eq. 1,
# mu 5 in Eq. 6, tau_high 0.7 / tau_low 0.3, BCE + dice with lambda_1 0.5
# from the warm-up's end, arg-max assignment and mean centroids (Eq. 5),
# colour-only pairwise term at 0.3, Eq. 11 scores on M_prob, a bank of 100,
# a quarter of the instances without replacement.
_base_ = './sim_r50_fpn_ms-90k_coco.py'

model = dict(
    momentum_head_input='teacher',  # F'_seg as one network (Fig. 2)
    data_preprocessor=dict(copy_paste=_base_.sim_paper_copy_paste),
    mask_head=_base_.sim_paper_mask_head)
custom_hooks = [_base_.ema_teacher_hook, _base_.sim_paper_memory_bank_hook]
