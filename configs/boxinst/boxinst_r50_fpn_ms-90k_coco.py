# BoxInst, R-50-FPN, COCO 1x (90k iterations, batch 16), AdelaiDet's recipe
# on mmdet's BoxInst/CondInst base.
_base_ = 'mmdet::boxinst/boxinst_r50_fpn_ms-90k_coco.py'

default_scope = 'mmboxseg'

model = dict(
    # dicts inherited through `mmdet::` carry _scope_='mmdet'; mmboxseg's
    # registries are children of mmdet's and resolve both.
    _scope_='mmboxseg',
    data_preprocessor=dict(
        _delete_=True,
        type='BoxSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        mask_stride=4,
        pairwise_size=3,
        pairwise_dilation=2,
        bottom_pixels_removed=10),
    # mmdet's BoxInst box head, with FCOS centre sampling that falls back to
    # the box centre for instances without a mask (mixed supervision)
    bbox_head=dict(_scope_='mmboxseg', type='BoxSupBboxHead', num_params=233),
    mask_head=dict(
        _delete_=True,
        type='BoxSupMaskHead',
        supervision='box',
        num_layers=3,
        # AdelaiDet: MASK_HEAD.CHANNELS=8 -> (16+2)*8+8 + 8*8+8 + 8+1 = 233
        feat_channels=8,
        size_of_interest=8,
        mask_out_stride=4,
        topk_masks_per_img=64,
        pairwise_color_thresh=0.3,
        warmup_iters=10000,
        mask_feature_head=dict(
            in_channels=256,
            feat_channels=128,
            start_level=0,
            end_level=2,
            out_channels=16,
            mask_stride=8,
            num_stacked_convs=4,
            norm_cfg=dict(type='BN', requires_grad=True)),
        loss_project=dict(type='BoxProjectionLoss', loss_weight=1.0),
        loss_pairwise=dict(
            type='PairwiseAffinityLoss',
            kernel_size=3,
            dilation=2,
            loss_weight=1.0)))

train_dataloader = dict(
    dataset=dict(_scope_='mmboxseg', type='BoxCocoDataset'))
val_dataloader = dict(dataset=dict(_scope_='mmboxseg', type='BoxCocoDataset'))
test_dataloader = val_dataloader
