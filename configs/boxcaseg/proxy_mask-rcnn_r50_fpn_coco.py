# BoxCaseg stage 3: Proxy Mask R-CNN, R-50-FPN, COCO.
# mmdet's Mask R-CNN trained on the proxy masks of the BoxCaseg segmenter;
# the proxy annotation file (`segmentation` + `proxy_box_agreement` for
# every box of instances_train2017.json) is written by
#   python tools/boxcaseg/generate_proxy_masks.py ...
# From the paper (Sec. 3.4, Table 8): masks whose proxy box agreement is
# below 0.95 are left out of the mask loss only; their boxes still train
# the RPN and the box head (ProxyFCNMaskHead, drop_thr=0.95).
# Schedule: the paper retrains "following the default settings in the
# maskrcnn benchmark" (Sec. 4; the release has no COCO retrain config),
# i.e. maskrcnn-benchmark's 1x (configs/e2e_mask_rcnn_R_101_FPN_1x.yaml
# and config/defaults.py in the release's retrain/maskrcnn-benchmark):
# SGD lr 0.02 for 16 images per iteration, momentum 0.9, wd 1e-4, 90k
# iterations, LR x0.1 at 60k and 80k, linear warm-up over 500 iterations
# from 1/3, biases at twice the LR and without weight decay
# (BIAS_LR_FACTOR 2, WEIGHT_DECAY_BIAS 0), shorter side 800 (max 1333),
# horizontal flip 0.5. 16 images = 8 GPUs x 2 (mmdet's 1x base); with
# another number of GPUs keep 16 or pass --auto-scale-lr.
# Backbone as maskrcnn-benchmark's (MODEL.WEIGHT catalog://ImageNetPretrained/
# MSRA/R-50 resp. R-101, as the release's VOC retrain yaml): Caffe-style
# MSRA ResNet (detectron2's conversion), frozen BN (FrozenBatchNorm2d),
# BGR input minus PIXEL_MEAN (102.9801, 115.9465, 122.7717), no std.
# The other proxy configs (VOC-aug, R-101, toy) inherit this file.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

default_scope = 'mmboxseg'

model = dict(
    # dicts inherited through `mmdet::` carry _scope_='mmdet'; mmboxseg's
    # registries are children of mmdet's and resolve both.
    _scope_='mmboxseg',
    data_preprocessor=dict(
        mean=[102.9801, 115.9465, 122.7717],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False),
    backbone=dict(
        style='caffe',
        norm_cfg=dict(requires_grad=False),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    roi_head=dict(mask_head=dict(type='ProxyFCNMaskHead', drop_thr=0.95)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # proxy masks + `proxy_box_agreement` -> gt_mask_agreement; transforms
    # that drop instances (RandomCrop, FilterAnnotations, ...) must not
    # come between these two (PackProxyDetInputs checks the counts)
    dict(type='LoadProxyAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackProxyDetInputs')
]
train_dataloader = dict(
    # iteration-based, as maskrcnn-benchmark
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _scope_='mmboxseg',
        type='BoxCocoDataset',
        # written by tools/boxcaseg/generate_proxy_masks.py
        ann_file='annotations/instances_train2017_proxy.json',
        ann_file_hint='make it with tools/boxcaseg/generate_proxy_masks.py '
        'from a trained BoxCaseg segmenter (configs/boxcaseg/README.md)',
        extra_instance_fields=['proxy_box_agreement'],
        pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_scope_='mmboxseg', type='BoxCocoDataset'))
test_dataloader = val_dataloader

max_iters = 90000
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0 / 3,
        by_epoch=False,
        begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[60000, 80000],
        gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# maskrcnn-benchmark's CHECKPOINT_PERIOD
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=2500, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
