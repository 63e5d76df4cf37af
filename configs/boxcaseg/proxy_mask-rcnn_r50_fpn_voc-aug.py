# BoxCaseg stage 2: Proxy Mask R-CNN, R-50-FPN, PASCAL VOC 2012 + SBD
# ("aug", 10,582 train images) in COCO format, evaluated on VOC 2012 val
# with COCO AP and AP25/50/70/75 (BoxCaseg Table 9).
# Proxy file: tools/boxcaseg/generate_proxy_masks.py run on
# voc_2012_train_aug_cocofmt.json writes voc_2012_train_aug_cocofmt_proxy.json
# (proxy `segmentation` + `proxy_box_agreement` on every box).
# From the paper (Sec. 3.4): masks with proxy box agreement < 0.95 are left
# out of the mask loss only (drop_thr, inherited from the COCO file).
# From the release (retrain/maskrcnn-benchmark/
# e2e_mask_rcnn_R_101_FPN_4x_voc_aug_cocostyle.yaml, an R-101 config; this
# R-50 file only changes the backbone): SGD lr 0.0075 with weight decay
# 1e-4 for 6 images per iteration, 22.5k iterations, LR x0.1 at 15k,
# shorter side 800 (maskrcnn-benchmark's default input size), the MSRA
# Caffe-style ImageNet backbone with frozen BN (MODEL.WEIGHT; inherited
# from the COCO file); warm-up and bias LR/decay are maskrcnn-benchmark's
# defaults (linear warm-up over 500 iterations from 1/3; biases at 2x LR,
# no decay). The rest is mmdet's Mask R-CNN. The release's mask-loss
# change is not public; masks with agreement >= 0.95 are kept (paper).
_base_ = './proxy_mask-rcnn_r50_fpn_coco.py'

data_root = 'data/voc/'
metainfo = dict(
    classes=('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
             'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
             'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor'))

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=20), mask_head=dict(num_classes=20)))

# 6 images per iteration in total: 3 GPUs x 2 images. With another number
# of GPUs keep the total at 6 or pass --auto-scale-lr (base_batch_size=6).
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/voc_2012_train_aug_cocofmt_proxy.json',
        ann_file_hint='make it with tools/boxcaseg/generate_proxy_masks.py '
        'from a trained BoxCaseg segmenter (configs/boxcaseg/README.md)',
        data_prefix=dict(img='JPEGImages/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/voc_2012_val_cocofmt.json',
        data_prefix=dict(img='JPEGImages/')))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    _scope_='mmboxseg',
    type='IoUThresholdsCocoMetric',
    ann_file=data_root + 'annotations/voc_2012_val_cocofmt.json',
    metric=['bbox', 'segm'],
    ap_iou_thrs=(0.25, 0.5, 0.7, 0.75))
test_evaluator = val_evaluator

max_iters = 22500
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=7500)
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
        milestones=[15000],
        gamma=0.1)
]
# maskrcnn-benchmark's defaults: momentum 0.9, biases at twice the LR and
# without weight decay (SOLVER.BIAS_LR_FACTOR 2, WEIGHT_DECAY_BIAS 0)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.0075, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=6)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=7500, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
