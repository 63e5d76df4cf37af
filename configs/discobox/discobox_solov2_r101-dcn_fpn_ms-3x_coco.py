# DiscoBox, SOLOv2 R-101-DCN-FPN, COCO 3x with multi-scale training (short
# side 640-800), as the release's discobox_solov2_r101_dcn_fpn_3x: DCNv2 in
# ResNet stages 2-4, in every conv of the kernel and category towers
# (use_dcn_in_tower) and in every conv of the mask-feature branch
# (mask_feat_head conv_cfg=DCNv2, its 1x1 output conv included), and the
# dense contrastive loss weighted 0.1 (1.0 in the R-50 config; the paper:
# 0.1).
_base_ = './discobox_solov2_r50_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')),
    mask_head=dict(
        dcn_cfg=dict(type='DCNv2'),
        dcn_apply_to_all_conv=True,
        mask_feature_head=dict(conv_cfg=dict(type='DCNv2')),
        loss_corr=dict(loss_weight=0.1)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 800), (1333, 768), (1333, 736), (1333, 704),
                (1333, 672), (1333, 640)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
