# mmdet 3.3.0's own BoxInst, the peer of configs/boxinst/boxinst_r18_fpn_toy.py
# in tools/analysis_tools/benchmark_zoo.py. Data, backbone, neck, FCOS head
# sizes, optimiser, schedule and seed are inherited from the mmboxseg toy
# config; every module that mmboxseg replaces goes back to mmdet's class with
# the arguments of mmdet's configs/boxinst/boxinst_r50_fpn_ms-90k_coco.py:
# BoxInstDataPreprocessor (needs scikit-image), BoxInstMaskHead (16-channel
# dynamic head, 593 parameters; mmdet's parse_dynamic_params needs equal
# channel counts), CocoDataset. Only the toy config's head sizes (R-18 neck
# channels, 2 stacked convs in the mask branch) and its two toy settings
# (pair-wise warm-up 200 iterations, no bottom-row removal) differ from
# mmdet's file; tests/test_tools/test_benchmark_zoo.py checks this.
_base_ = './boxinst_r18_fpn_toy.py'

model = dict(
    _scope_='mmdet',
    data_preprocessor=dict(
        _delete_=True,
        type='BoxInstDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        mask_stride=4,
        pairwise_size=3,
        pairwise_dilation=2,
        pairwise_color_thresh=0.3,
        bottom_pixels_removed=0),
    bbox_head=dict(_scope_='mmdet', type='BoxInstBboxHead', num_params=593),
    mask_head=dict(
        _delete_=True,
        type='BoxInstMaskHead',
        num_layers=3,
        feat_channels=16,
        size_of_interest=8,
        mask_out_stride=4,
        topk_masks_per_img=64,
        warmup_iters=200,  # = pairwise_warmup_iters of the toy config
        mask_feature_head=dict(
            in_channels=128,
            feat_channels=64,
            start_level=0,
            end_level=2,
            out_channels=16,
            mask_stride=8,
            num_stacked_convs=2,
            norm_cfg=dict(type='BN', requires_grad=True)),
        loss_mask=dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            eps=5e-6,
            loss_weight=1.0)))

train_dataloader = dict(dataset=dict(_scope_='mmdet', type='CocoDataset'))
val_dataloader = dict(dataset=dict(_scope_='mmdet', type='CocoDataset'))
test_dataloader = dict(dataset=dict(_scope_='mmdet', type='CocoDataset'))
