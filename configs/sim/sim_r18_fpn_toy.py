# SIM on the bundled toy data, with the BoxInst toy run's data, network and
# schedule (1,500 iterations), so the two compare directly. Schedule-bound
# values are scaled from COCO's 90k iterations to 1,500: the pseudo losses
# start at 200 (10k of 90k), their ramp min(t / T, 1) has T = 4,500 (the
# code's 270k, three times the 1x schedule, as on COCO 1x, so it reaches
# 1/3 at the end), the momentum encoder's horizon 1 / (1 - m) = 10k of 90k
# becomes 200 (m = 0.995), and the prototypes move with m = 0.99 (about 5
# updates per class and iteration here).
_base_ = ['../boxinst/boxinst_r18_fpn_toy.py', '../_base_/sim.py']

model = dict(
    _base_.sim_model,
    mask_head=dict(
        _base_.sim_mask_head,
        num_classes=_base_.num_classes,
        prototype_momentum=0.99,
        pseudo_start_iters=200,
        pseudo_ramp_iters=4500))
custom_hooks = [
    dict(_base_.ema_teacher_hook, momentum=0.995), _base_.memory_bank_hook
]
