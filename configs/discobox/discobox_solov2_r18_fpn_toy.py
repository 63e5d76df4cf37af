# DiscoBox on the bundled toy data, with the BoxInst toy run's data,
# schedule and optimiser (1,500 iterations, configs/boxinst/
# boxinst_r18_fpn_toy.py) so that the two compare directly; the network is
# a small SOLOv2 (R-18-FPN from scratch, 128 channels).
# Schedule-bound values are scaled from the release's COCO run: the teacher
# starts at 13k of 264k iterations (5%) -> 100 of 1,500, and its horizon
# 1 / (1 - m) = 1k iterations (0.4%) -> m = 0.99 (100 iterations).
# Image-bound: the bank's push rule (release: box sides > 128 px on 800-px
# short sides, 16%) -> 20 px on the 128-px toy images (with 128 no toy
# object would ever enter the bank).
_base_ = ['../boxinst/boxinst_r18_fpn_toy.py', '../_base_/discobox.py']

teacher_start_iter = 100
model = dict(
    _base_.discobox_model,
    _delete_=True,
    _scope_='mmboxseg',
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='FPN',
        in_channels=[64, 128, 256, 512],
        out_channels=128,
        start_level=0,
        num_outs=5),
    mask_head=dict(
        _base_.discobox_mask_head,
        num_classes=_base_.num_classes,
        in_channels=128,
        feat_channels=128,
        stacked_convs=2,
        # 128-px images, objects of 12-77 px
        scale_ranges=((1, 24), (12, 48), (24, 96), (48, 192), (96, 2048)),
        num_grids=[32, 24, 16, 12, 8],
        mask_feature_head=dict(
            feat_channels=64,
            start_level=0,
            end_level=3,
            out_channels=64,
            mask_stride=4,
            norm_cfg=dict(type='GN', num_groups=32, requires_grad=True))),
    gates=dict(
        _base_.discobox_model.gates, teacher_start_iter=teacher_start_iter),
    test_cfg=dict(_base_.discobox_model.test_cfg, max_per_img=50))
custom_hooks = [
    dict(
        _base_.discobox_ema_hook, momentum=0.99,
        start_iter=teacher_start_iter),
    dict(
        _base_.discobox_bank_hook,
        bank=dict(
            _base_.discobox_bank_hook.bank,
            num_classes=_base_.num_classes,
            min_size=20))
]
