# BoxTeacher, R-50-FPN, COCO 1x (90k iterations, batch 16, SGD 0.01), over
# the BoxInst config of the same schedule. Student view: multi-scale
# 640-800 and flip, no colour augmentation (the paper's 1x row, Table 1
# "trained without strong augmentation", and the released 1x checkpoint's
# 32.6 val AP = Table 8's no-augmentation row; the released yaml as written
# inherits "strong": boxteacher_r50_fpn_ms-90k_coco_strong-aug.py). Teacher
# view: the same image at the test scale (1333 x 800).
_base_ = [
    '../boxinst/boxinst_r50_fpn_ms-90k_coco.py', '../_base_/boxteacher.py'
]

model = _base_.boxteacher_model
# geometry first, then the two views
train_pipeline = _base_.train_pipeline[:-1] + [_base_.boxteacher_views_plain]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [_base_.ema_teacher_hook]
