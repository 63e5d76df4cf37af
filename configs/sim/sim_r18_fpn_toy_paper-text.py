# SIM toy with the paper's text where it differs from the public code (as
# sim_r50_fpn_ms-90k_coco_paper-text.py); the toy schedule's scaled values
# (momenta, pseudo-loss start) stay.
_base_ = './sim_r18_fpn_toy.py'

model = dict(
    momentum_head_input='teacher',  # F'_seg as one network (Fig. 2)
    data_preprocessor=dict(copy_paste=_base_.sim_paper_copy_paste),
    mask_head=_base_.sim_paper_mask_head)
custom_hooks = [
    _base_.custom_hooks[0],
    _base_.sim_paper_memory_bank_hook,
]
