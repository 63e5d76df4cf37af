# Semi-supervised BoxInst (paper Sec. 3.6, Table 6): the 20 Pascal VOC
# classes of COCO keep their masks, the other 60 are trained from boxes.
# The annotation file keeps `segmentation` only on the VOC-class instances;
# make it with
#   python tools/misc/split_mask_annotations.py \
#     data/coco/annotations/instances_train2017.json \
#     data/coco/annotations/instances_train2017_semi-voc20.json \
#     --keep-masks-of voc
_base_ = './boxinst_r50_fpn_ms-90k_coco.py'

# the preprocessor keeps (and pads) the loaded masks only under 'mixed'; the
# mask head must agree
supervision = 'mixed'
model = dict(
    data_preprocessor=dict(supervision=supervision, pad_mask=True),
    mask_head=dict(supervision=supervision))

backend = 'pillow'
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend=backend),
    # box-only instances get empty masks from BoxCocoDataset
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736),
                (1333, 768), (1333, 800)],
        keep_ratio=True,
        backend=backend),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        ann_file='annotations/instances_train2017_semi-voc20.json',
        pipeline=train_pipeline))
