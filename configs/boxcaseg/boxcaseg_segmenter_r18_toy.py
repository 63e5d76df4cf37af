# BoxCaseg stage 1 on the bundled toy data: R-18 from scratch instead of
# HRNet-W48, box crops of data/toy (boxes only) jointly with the toy salient
# set (python tools/misc/make_toy_dataset.py --salient --out
# data/toy_salient: one object per image, from shape families the toy
# classes do not have, as DUTS shares no classes with COCO). Crops are 64
# px instead of 288 (toy boxes span 12-77 px of 128-px images; 96-px crops
# measured 2x slower per step on CPU) and the toy recipe's AdamW schedule
# of every other toy config. Everything else (11:5 batches, per-source
# input normalisation, raw saliency masks, alpha 0.6) is the COCO config's.
_base_ = './boxcaseg_segmenter_hrnetv2p-w48_coco-duts.py'

crop_size = 64
salient_scale = 71  # 320 / 288 of the crop, as in the paper
test_crop_size = 71
batch_size = 16
max_iters = 2000
meta_keys = {{_base_.meta_keys}}

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    decode_head=dict(
        in_channels=[64, 128, 256, 512],
        channels=64,
        norm_cfg=dict(type='BN', requires_grad=True)))

box_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='BoxJitterCrop', center_jitter=0.25, scale_range=(0.5, 1.5)),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
salient_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSalientMask', thr=None),
    dict(
        type='Resize', scale=(salient_scale, salient_scale), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='RandomCrop', crop_size=(crop_size, crop_size)),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
proxy_pipeline = [
    dict(type='BoxJitterCrop', jitter=False),
    dict(
        type='Resize',
        scale=(test_crop_size, test_crop_size),
        keep_ratio=False),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
test_pipeline = [dict(type='LoadImageFromFile')] + proxy_pipeline

data_root = 'data/toy/'
metainfo = dict(classes=('ring', 'crescent', 'star', 'ell'))
box_source = dict(
    type='BoxCropDataset',
    data_root=data_root,
    metainfo=metainfo,
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img='images/train/'),
    filter_cfg=dict(min_size=2),
    pipeline=box_train_pipeline)
salient_source = dict(
    type='SalientDataset',
    data_root='data/toy_salient/',
    single_object=True,
    pipeline=salient_train_pipeline)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    pin_memory=False,
    sampler=dict(batch_size=batch_size, seed=0),
    dataset=dict(datasets=[box_source, salient_source]))
val_dataloader = dict(
    batch_size=16,
    num_workers=1,
    pin_memory=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    pin_memory=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='BoxCropDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img='images/test/'),
        with_mask=True,
        test_mode=True,
        pipeline=test_pipeline))

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the toy recipe shared by every toy config (configs/boxinst/
# boxinst_r18_fpn_toy.py): AdamW from scratch, warm-up, step at 80 %
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
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
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=500, max_keep_ckpts=2))
log_processor = dict(window_size=20)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=16)
