# BoxTeacher, R-50-FPN, COCO 1x (90k iterations, batch 16, SGD 0.01), over
# the BoxInst config of the same schedule. Student view: multi-scale
# 640-800, flip, "strong" colour augmentation; teacher view: the same
# geometry, un-augmented colours.
_base_ = [
    '../boxinst/boxinst_r50_fpn_ms-90k_coco.py', '../_base_/boxteacher.py'
]

model = _base_.boxteacher_model
# geometry first, then the two views
train_pipeline = _base_.train_pipeline[:-1] + [_base_.boxteacher_views]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [_base_.ema_teacher_hook]
