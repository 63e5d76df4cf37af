# The toy Mask R-CNN of proxy_mask-rcnn_r18_fpn_toy.py trained on the REAL
# ground-truth masks (instances_train_with_masks.json) on purpose: the
# mask-supervised upper bound for the toy BoxCaseg results, never a
# box-supervised result. Plain LoadAnnotations/PackDetInputs, no agreement,
# no mask dropped (drop_thr=None); model, data and schedule otherwise as
# the proxy toy config.
_base_ = './proxy_mask-rcnn_r18_fpn_toy.py'

model = dict(roi_head=dict(mask_head=dict(drop_thr=None)))

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
        extra_instance_fields=[],
        pipeline=train_pipeline))
