# BoxTeacher, R-50-FPN, COCO 3x: BoxInst's 3x schedule (270k iterations,
# steps at 210k / 250k) and the "strongv2" student augmentation (adds
# Gaussian blur), as the public code's boxteacher_r50_3x.yaml.
_base_ = [
    '../boxinst/boxinst_r50_fpn_ms-270k_coco.py', '../_base_/boxteacher.py'
]

model = _base_.boxteacher_model
train_pipeline = _base_.train_pipeline[:-1] + [_base_.boxteacher_views_blur]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [_base_.ema_teacher_hook]
