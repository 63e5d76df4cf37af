# DiscoBox, SOLOv2 R-50-FPN, Pascal VOC 2012 + SBD ("aug", 10,582 images) in
# COCO format, 72 epochs (the release's discobox_solov2_voc_r50_fpn_6x:
# steps at 54/66, warm-up ratio 0.001, mask threshold 0.5; its README
# trains it on 4 GPUs x 2 images, batch 8, with the config's LR 0.01: the
# release does not scale the LR with the batch). Evaluated on VOC 2012 val
# with COCO AP and AP25/50/70/75 (the paper's Table 2; the release uses
# BBTP's Matlab code). Layout as configs/boxinst/
# boxinst_r50_fpn_ms-15k_voc-aug.py:
#   data/voc/annotations/voc_2012_train_aug_cocofmt.json
#   data/voc/annotations/voc_2012_val_cocofmt.json
#   data/voc/JPEGImages/
_base_ = './discobox_solov2_r50_fpn_3x_coco.py'

data_root = 'data/voc/'
metainfo = dict(
    classes=('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
             'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
             'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor'))
num_classes = 20

model = dict(
    mask_head=dict(num_classes=num_classes), test_cfg=dict(mask_thr=0.5))
custom_hooks = [
    _base_.discobox_ema_hook,
    dict(
        _base_.discobox_bank_hook,
        bank=dict(_base_.discobox_bank_hook.bank, num_classes=num_classes))
]

train_dataloader = dict(
    batch_size=2,
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

max_epochs = 72
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=2000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[54, 66],
        gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(enable=False, base_batch_size=8)
