# BoxTeacher on the bundled toy data, with the BoxInst toy run's data,
# network and schedule (1,500 iterations), so the two compare directly.
# As the COCO 1x config: no colour augmentation of the student view, the
# teacher at the test scale (here the toy test scale, 128 x 128).
# Schedule-dependent values are scaled to 1,500 iterations: the pseudo-mask
# warm-up (10k of 90k on COCO) to 300 iterations and the EMA horizon
# (1 / (1 - m) = 1,000 of 90k) to 100 (m = 0.99).
_base_ = ['../boxinst/boxinst_r18_fpn_toy.py', '../_base_/boxteacher.py']

model = dict(
    _base_.boxteacher_model,
    teacher_scale=_base_.img_scale,
    mask_head=dict(_base_.boxteacher_model.mask_head, pseudo_warmup_iters=300))
train_pipeline = _base_.train_pipeline[:-1] + [_base_.boxteacher_views_plain]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [dict(_base_.ema_teacher_hook, momentum=0.99)]
