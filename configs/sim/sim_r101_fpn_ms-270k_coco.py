# SIM, R-101-FPN, COCO 3x (270k iterations), over BoxInst's R-101 3x config.
_base_ = ['../boxinst/boxinst_r101_fpn_ms-270k_coco.py', '../_base_/sim.py']

model = _base_.sim_model
custom_hooks = _base_.sim_hooks
