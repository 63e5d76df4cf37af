# SIM, R-50-FPN, Pascal VOC 2012 aug (the paper's Table 2), over BoxInst's
# VOC config. The pseudo losses start after 2k of the 15k iterations (10k of
# 90k on COCO, scaled); their ramp min(t / T, 1) has T = 45k (the code's
# 270k is three times COCO 1x; the code has no VOC config).
_base_ = ['../boxinst/boxinst_r50_fpn_ms-15k_voc-aug.py', '../_base_/sim.py']

model = dict(
    _base_.sim_model,
    mask_head=dict(
        _base_.sim_mask_head,
        num_classes=20,
        pseudo_start_iters=2000,
        pseudo_ramp_iters=45000))
custom_hooks = _base_.sim_hooks
