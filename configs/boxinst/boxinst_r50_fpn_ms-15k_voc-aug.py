# BoxInst, R-50-FPN, Pascal VOC 2012 + SBD ("aug", 10,582 train images) in
# COCO format, evaluated on VOC 2012 val (1,449 images) with COCO AP and
# AP25/50/70/75 as in BoxTeacher Table 2 and BoxCaseg Table 9.
# Schedule: 15k iterations at 16 images per batch (BoxTeacher Sec. 5.2);
# the LR steps at 10k/13.5k are ours (the paper gives none).
# Expected layout (COCO-format files as distributed with BoxTeacher/BBTP):
#   data/voc/annotations/voc_2012_train_aug_cocofmt.json
#   data/voc/annotations/voc_2012_val_cocofmt.json
#   data/voc/JPEGImages/
_base_ = './boxinst_r50_fpn_ms-90k_coco.py'

data_root = 'data/voc/'
metainfo = dict(
    classes=('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
             'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
             'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor'))

model = dict(
    # VOC annotations have no unlabelled bottom strip (a COCO artefact)
    data_preprocessor=dict(bottom_pixels_removed=0),
    bbox_head=dict(num_classes=20))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/voc_2012_train_aug_cocofmt.json',
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

max_iter = 15000
train_cfg = dict(max_iters=max_iter, val_interval=5000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iter,
        by_epoch=False,
        milestones=[10000, 13500],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=5000))
