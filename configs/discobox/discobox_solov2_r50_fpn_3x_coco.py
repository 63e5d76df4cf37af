# DiscoBox, SOLOv2 R-50-FPN, COCO 3x (36 epochs, single scale 1333x800),
# boxes only; the release's discobox_solov2_r50_fpn_3x recipe on mmdet's
# SOLOv2 base (2 images x 8 GPUs, SGD 0.01, warm-up 2k, steps 33/35).
_base_ = ['mmdet::solov2/solov2_r50_fpn_1x_coco.py', '../_base_/discobox.py']

default_scope = 'mmboxseg'

model = dict(
    _base_.discobox_model,
    _scope_='mmboxseg',
    data_preprocessor=dict(_base_.discobox_data_preprocessor, _delete_=True),
    mask_head=dict(_base_.discobox_mask_head, _delete_=True))
custom_hooks = _base_.discobox_hooks

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _scope_='mmboxseg', type='BoxCocoDataset', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_scope_='mmboxseg', type='BoxCocoDataset'))
test_dataloader = val_dataloader
# boxes come from the mask extents (DiscoBoxSOLOv2Head)
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=2000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[33, 35],
        gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
