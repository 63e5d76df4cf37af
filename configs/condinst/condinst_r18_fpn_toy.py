# CondInst trained WITH masks on the toy data: the upper bound of every box
# supervised method. Same network, data and schedule as
# configs/boxinst/boxinst_r18_fpn_toy.py (inherited); only the supervision
# differs: the mask head runs in 'mask' mode (CondInst's dice loss on every
# instance, no box terms) on the training file that carries masks, and the
# plain mmdet preprocessor replaces the box-supervision one (no colour
# similarity is needed).
_base_ = '../boxinst/boxinst_r18_fpn_toy.py'

model = dict(
    data_preprocessor=dict(
        _delete_=True,
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    mask_head=dict(supervision='mask'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        ann_file='annotations/instances_train_with_masks.json',
        pipeline=train_pipeline))
