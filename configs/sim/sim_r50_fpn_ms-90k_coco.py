# SIM, R-50-FPN, COCO 1x (90k iterations, batch 16, SGD 0.01, MS 640-800),
# over the BoxInst config of the same schedule: 10k iterations of BoxInst's
# losses, then the pseudo-mask and paste losses (Sec. 4.1).
_base_ = ['../boxinst/boxinst_r50_fpn_ms-90k_coco.py', '../_base_/sim.py']

model = _base_.sim_model
custom_hooks = _base_.sim_hooks
