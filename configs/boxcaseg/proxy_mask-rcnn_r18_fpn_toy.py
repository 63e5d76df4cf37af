# BoxCaseg stage 2 on the bundled toy data: Proxy Mask R-CNN, R-18-FPN from
# scratch, 128x128 images, trained on the proxy masks that
#   python tools/boxcaseg/generate_proxy_masks.py ...
# writes to data/toy/annotations/instances_train_proxy.json (from the
# box-only instances_train.json and the toy BoxCaseg segmenter). Masks with
# proxy box agreement < 0.95 are left out of the mask loss, their boxes are
# not (paper Sec. 3.4). Data, optimiser and schedule mirror
# configs/boxinst/boxinst_r18_fpn_toy.py (AdamW 1e-3, 8 images per batch,
# 1500 iterations, LR x0.1 at 80 %), so toy AP compares across methods;
# mask-rcnn_r18_fpn_toy_gt-masks.py is the mask-supervised upper bound.
_base_ = './proxy_mask-rcnn_r50_fpn_coco.py'

data_root = 'data/toy/'
metainfo = dict(
    classes=('ring', 'crescent', 'star', 'ell'),
    palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30), (0, 160, 80)])
num_classes = 4
img_scale = (128, 128)
max_iters = 1500
channels = 128

model = dict(
    # from scratch, so none of the COCO file's Caffe-weight settings
    # (Caffe style, frozen BN, Caffe means without std): the toy recipe of
    # every other toy config
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        depth=18,
        style='pytorch',
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        # toy objects are 5-76 px (median 25): anchors from 16 px at P2
        # (mmdet's scale 8 starts at 32 px, and a 12 px box would overlap
        # it below min_pos_iou=0.3, i.e. get no RPN positive)
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(
            in_channels=channels, fc_out_channels=256,
            num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=num_classes)),
    # at most 5 objects per image: fewer proposals and sampled RoIs
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=300), rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadProxyAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackProxyDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train_proxy.json',
        ann_file_hint='the proxy masks are made by `bash '
        'tools/boxcaseg/toy_pipeline.sh` (segmenter, then '
        'tools/boxcaseg/generate_proxy_masks.py)',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
eval_loader = dict(
    batch_size=8, num_workers=1, persistent_workers=True, pin_memory=False)
val_dataloader = dict(
    **eval_loader,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=test_pipeline))
test_dataloader = dict(
    **eval_loader,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img='images/test/'),
        pipeline=test_pipeline))
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_test.json',
    metric=['bbox', 'segm'],
    format_only=False)

train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[int(max_iters * 0.8)],
        gamma=0.1)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=500, max_keep_ckpts=2))
log_processor = dict(window_size=20, by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# toy runs are seeded so that the README figures can be reproduced
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
