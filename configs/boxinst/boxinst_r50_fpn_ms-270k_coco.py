# BoxInst, R-50-FPN, COCO 3x: 270k iterations, steps at 210k / 250k
# (AdelaiDet MS_R_50_3x.yaml).
_base_ = './boxinst_r50_fpn_ms-90k_coco.py'

max_iter = 270000
train_cfg = dict(max_iters=max_iter, val_interval=30000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iter,
        by_epoch=False,
        milestones=[210000, 250000],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=30000))
