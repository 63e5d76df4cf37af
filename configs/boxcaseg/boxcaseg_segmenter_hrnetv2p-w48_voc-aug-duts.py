# BoxCaseg stage 1 on PASCAL VOC 2012 SBD-aug (10,582 images, 25,815
# boxes): release train_pd.sh / experiments/PD/pd_trans_fcn.yaml /
# tools/pd_train.py: alpha (--fcn_ratio) 0.7, SGD lr 0.004, momentum 0.9,
# wd 1e-4, 16 crops per GPU on 2 GPUs, 40 epochs of poly LR (power 0.9).
# Sampling as released: a DistributedSampler over the plain concatenation
# of the box crops and DUTS-Single (pd_train.py l.178-207), i.e. no fixed
# box:salient ratio per batch (the batches hold 76 % box crops on
# average) and no overlap drop (COCO only) -> mmengine's InfiniteSampler
# over the ConcatDataset. An epoch is int((25,815 + 7,991) / 32) = 1,056
# iterations (pd_train.py l.230), 40 epochs 42,240 iterations, over which
# the poly LR runs. The COCO config's fixed-ratio sampler is
#   --cfg-options train_dataloader.sampler.type=BoxSalientRatioSampler \
#       train_dataloader.sampler.batch_size=16
# (11:5; add train_dataloader.sampler.source_ratio="[9,7]" for the paper's
# COCO ratio). Everything else is inherited from the COCO config.
_base_ = './boxcaseg_segmenter_hrnetv2p-w48_coco-duts.py'

num_box = 25815  # boxes of voc_2012_train_aug_cocostyle.json
num_salient = 7991  # DUTS-TR-Single
batch_size = 16  # per GPU
num_gpus = 2
epoch_iters = (num_box + num_salient) // (batch_size * num_gpus)  # 1,056
train_epochs = 40  # END_EPOCH; the poly LR ends with the training
poly_epochs = train_epochs
max_iters = train_epochs * epoch_iters  # 42,240
poly_iters = max_iters
model = dict(decode_head=dict(alpha=0.7))

box_data_root = 'data/voc/'
# without these the COCO base's 80 names would keep only the 14 VOC classes
# whose names COCO shares (BoxCocoDataset warns about skipped categories)
metainfo = dict(
    classes=('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
             'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
             'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor'))
box_source = dict(
    type='BoxCropDataset',
    data_root=box_data_root,
    metainfo=metainfo,
    ann_file='annotations/voc_2012_train_aug_cocofmt.json',
    data_prefix=dict(img='JPEGImages/'),
    filter_cfg=dict(min_size=2),
    pipeline={{_base_.box_train_pipeline}})
salient_source = {{_base_.salient_source}}
train_dataloader = dict(
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(datasets=[box_source, salient_source]))
val_dataloader = dict(
    dataset=dict(
        data_root=box_data_root,
        metainfo=metainfo,
        ann_file='annotations/voc_2012_val_cocofmt.json',
        data_prefix=dict(img='JPEGImages/')))
test_dataloader = val_dataloader
# the release saves a checkpoint every 5 epochs
train_cfg = dict(max_iters=max_iters, val_interval=5 * epoch_iters)
optim_wrapper = dict(optimizer=dict(lr=0.004))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=poly_iters,
        by_epoch=False)
]
default_hooks = dict(checkpoint=dict(interval=5 * epoch_iters))
