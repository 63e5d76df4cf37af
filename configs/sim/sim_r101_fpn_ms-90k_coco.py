# SIM, R-101-FPN, COCO 1x (the paper's Table 1, 1x row).
_base_ = './sim_r50_fpn_ms-90k_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
