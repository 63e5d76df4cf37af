# BoxTeacher, R-50-FPN, Cityscapes fine (2,975 train images, 8 classes),
# paper Sec. 5.3: 24k iterations, 8 images per batch, LR 0.005; student
# short side 800-1024 (long side up to 2048). Initialise from a COCO 1x
# BoxTeacher checkpoint with `--cfg-options load_from=...` for the paper's
# "fine + COCO" row (the 80-class heads are then re-learnt: mismatched
# shapes are skipped by mmengine with a warning).
#
# Annotations in COCO format, as mmdet's cityscapes tools write them
# (python tools/dataset_converters/cityscapes.py from mmdet):
#   data/cityscapes/annotations/instancesonly_filtered_gtFine_{train,val}.json
#   data/cityscapes/leftImg8bit/{train,val}/
# The official Cityscapes AP needs `cityscapesscripts`
# (requirements/optional.txt): add `cityscapes_metric` below to
# val_evaluator as a list.
_base_ = './boxteacher_r50_fpn_ms-90k_coco.py'

data_root = 'data/cityscapes/'
metainfo = dict(
    classes=('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
             'bicycle'))

model = dict(
    # Cityscapes masks cover the whole frame: no unlabelled bottom rows
    data_preprocessor=dict(bottom_pixels_removed=0),
    bbox_head=dict(num_classes=8),
    # the teacher keeps the original 2048 x 1024 (paper Sec. 5.3; the test
    # scale here)
    teacher_scale=(2048, 1024),
    # the COCO warm-up (10k of 90k) scaled to 24k iterations
    mask_head=dict(pseudo_warmup_iters=2500))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomResize',
        scale=[(2048, 800), (2048, 1024)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5), _base_.train_pipeline[-1]
]
test_pipeline = [
    dict(t, scale=(2048, 1024)) if t['type'] == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instancesonly_filtered_gtFine_train.json',
        data_prefix=dict(img='leftImg8bit/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instancesonly_filtered_gtFine_val.json',
        data_prefix=dict(img='leftImg8bit/val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'annotations/instancesonly_filtered_gtFine_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator
cityscapes_metric = dict(
    type='CityScapesMetric',
    seg_prefix=data_root + 'gtFine/val',
    outfile_prefix='./work_dirs/cityscapes_metric/instance')

max_iter = 24000
train_cfg = dict(max_iters=max_iter, val_interval=8000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iter,
        by_epoch=False,
        milestones=[18000],
        gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.005))
default_hooks = dict(checkpoint=dict(interval=8000))
# 8 GPUs x 1 image
auto_scale_lr = dict(base_batch_size=8)
