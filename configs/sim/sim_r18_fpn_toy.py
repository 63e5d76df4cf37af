# SIM on the bundled toy data, with the BoxInst toy run's data, network and
# schedule (1,500 iterations), so the two compare directly. Schedule-bound
# values are scaled from COCO's 90k iterations to 1,500: the pseudo losses
# start at 200 (10k of 90k), the momentum encoder's horizon
# 1 / (1 - m) = 10k of 90k becomes 200 (m = 0.995), and the prototypes move
# with m = 0.99 (about 5 updates per class and iteration here).
_base_ = ['../boxinst/boxinst_r18_fpn_toy.py', '../_base_/sim.py']

model = dict(
    _base_.sim_model,
    mask_head=dict(
        _base_.sim_mask_head,
        num_classes=_base_.num_classes,
        prototype_momentum=0.99,
        pseudo_start_iters=200))
custom_hooks = [
    dict(_base_.ema_teacher_hook, momentum=0.995), _base_.memory_bank_hook
]
