# BoxTeacher, R-50-FPN, Pascal VOC 2012 aug (10,582 images), 15k iterations
# at 16 images per batch (paper Sec. 5.2), COCO AP and AP25/50/70/75 on VOC
# 2012 val. Data layout: see ../boxinst/boxinst_r50_fpn_ms-15k_voc-aug.py.
_base_ = [
    '../boxinst/boxinst_r50_fpn_ms-15k_voc-aug.py', '../_base_/boxteacher.py'
]

# the 10k warm-up of the COCO recipe, scaled to the 15k schedule
model = dict(
    _base_.boxteacher_model,
    mask_head=dict(
        _base_.boxteacher_model.mask_head, pseudo_warmup_iters=2000))
train_pipeline = _base_.train_pipeline[:-1] + [_base_.boxteacher_views]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [_base_.ema_teacher_hook]
