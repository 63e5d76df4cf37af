# BoxCaseg stage 1 on COCO: the class-agnostic box segmenter (HRNetV2-W48,
# weak / salient / transferred heads, alpha 0.6), trained jointly on COCO
# box crops (boxes only) and DUTS-TR single-object salient images.
# Release numbers (hustvl/BoxCaseg joint_training: train_cd.sh,
# experiments/CD/cd_trans_fcn.yaml, tools/cd_train.py): SGD lr 0.008,
# momentum 0.9, wd 1e-4, 16 crops per GPU on 2 GPUs, 11:5 box crops to
# salient images per batch (--weakly_ratio 0.6875), box crops 288x288 with
# jitter, salient images 320 -> vertical flip -> crop 288, test crops the
# exact box at 320, boxes overlapping another box at IoU > 0.5 dropped with
# p = 0.75 per epoch, per-source input normalisation
# (BoxCasegDataPreprocessor), raw saliency masks divided by their maximum
# (LoadSalientMask(thr=None)), seed 1234, SyncBN.
# Schedule: an epoch is one pass over the salient images,
# int(7991 / (1 - 0.6875) / 32) = 799 iterations (cd_train.py l.237); the
# poly LR (power 0.9, utils.py l.173-177) runs over END_EPOCH = 200 epochs
# (159,800 iterations) and the release's model (README: COCO_epoch_50) is
# the epoch-50 checkpoint, so training stops at 50 x 799 = 39,950
# iterations with the LR still at 0.008 * 0.75 ** 0.9.
# The paper's text (9:7 batches, Table 5; lr 4e-3, Sec. 4) is
# boxcaseg_segmenter_hrnetv2p-w48_coco-duts_paper-9to7-lr4e-3.py.
_base_ = 'mmdet::_base_/default_runtime.py'

default_scope = 'mmboxseg'

crop_size = 288
salient_scale = 320
test_crop_size = 320
alpha = 0.6
batch_size = 16  # per GPU
num_gpus = 2
source_ratio = [11, 5]  # box crops : salient images per batch
num_salient = 7991  # DUTS-TR-Single
epoch_iters = int(num_salient / (source_ratio[1] / sum(source_ratio)) /
                  (batch_size * num_gpus))  # 799
poly_epochs = 200  # the poly LR's length (END_EPOCH)
train_epochs = 50  # the released checkpoint
poly_iters = poly_epochs * epoch_iters  # 159,800
max_iters = train_epochs * epoch_iters  # 39,950
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    _scope_='mmboxseg',
    type='BoxCasegSegmenter',
    # box crops (x - Caffe means) / 255, salient images x / max(x) then
    # ImageNet mean/std (release); normalisation='common' with mean/std
    # gives one normalisation for both
    data_preprocessor=dict(
        type='BoxCasegDataPreprocessor',
        normalisation='per_source',
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='HRNet',
        norm_cfg=norm_cfg,
        # the release trains every BN (SyncBN) of the backbone; mmdet's HRNet
        # would freeze their statistics by default
        norm_eval=False,
        extra=dict(
            stage1=dict(
                num_modules=1,
                num_branches=1,
                block='BOTTLENECK',
                num_blocks=(4, ),
                num_channels=(64, )),
            stage2=dict(
                num_modules=1,
                num_branches=2,
                block='BASIC',
                num_blocks=(4, 4),
                num_channels=(48, 96)),
            stage3=dict(
                num_modules=4,
                num_branches=3,
                block='BASIC',
                num_blocks=(4, 4, 4),
                num_channels=(48, 96, 192)),
            stage4=dict(
                num_modules=3,
                num_branches=4,
                block='BASIC',
                num_blocks=(4, 4, 4, 4),
                num_channels=(48, 96, 192, 384))),
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w48')),
    decode_head=dict(
        type='BoxCasegHead',
        in_channels=[48, 96, 192, 384],
        in_index=[0, 1, 2, 3],
        channels=720,
        alpha=alpha,
        norm_cfg=norm_cfg),
    loss_mil=dict(type='MILBagLoss', loss_weight=1.0),
    loss_smooth=dict(type='NeighbourSmoothnessLoss', loss_weight=0.05),
    loss_pixel_weight=1.0,
    test_cfg=dict(minmax_normalise=True, mask_thr=0.5))

# what every crop carries to the model and the metric
meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'source',
             'crop_region', 'crop_shape', 'bbox_label', 'gt_crop_mask')
box_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='BoxJitterCrop', center_jitter=0.25, scale_range=(0.5, 1.5)),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
salient_train_pipeline = [
    dict(type='LoadImageFromFile'),
    # raw 0-255 mask, divided by its maximum in the segmenter (release)
    dict(type='LoadSalientMask', thr=None),
    dict(
        type='Resize', scale=(salient_scale, salient_scale), keep_ratio=False),
    # the release flips salient images vertically (image[::-1])
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='RandomCrop', crop_size=(crop_size, crop_size)),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
# evaluation and proxy masks: the exact box, no context, resized to 320
proxy_pipeline = [
    dict(type='BoxJitterCrop', jitter=False),
    dict(
        type='Resize',
        scale=(test_crop_size, test_crop_size),
        keep_ratio=False),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
test_pipeline = [dict(type='LoadImageFromFile')] + proxy_pipeline

box_data_root = 'data/coco/'
salient_data_root = 'data/DUTS-TR/'
box_source = dict(
    type='BoxCropDataset',
    data_root=box_data_root,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    filter_cfg=dict(min_size=2),
    pipeline=box_train_pipeline)
salient_source = dict(
    type='SalientDataset',
    data_root=salient_data_root,
    img_dir='DUTS-TR-Image',
    mask_dir='DUTS-TR-Mask',
    single_object=True,
    pipeline=salient_train_pipeline)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(
        type='BoxSalientRatioSampler',
        batch_size=batch_size,
        source_ratio=source_ratio,
        overlap_drop_prob=0.75),
    batch_sampler=None,
    dataset=dict(
        type='ConcatDataset',
        # the two sources share no class list
        ignore_keys=['classes', 'palette'],
        datasets=[box_source, salient_source]))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='BoxCropDataset',
        data_root=box_data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        with_mask=True,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='BoxCropIoUMetric')
test_evaluator = val_evaluator

# the release saves a checkpoint every 5 epochs
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=5 * epoch_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.008, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=poly_iters,
        by_epoch=False)
]
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False, interval=5 * epoch_iters, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
# release: seed 1234
randomness = dict(seed=1234)
auto_scale_lr = dict(enable=False, base_batch_size=32)
