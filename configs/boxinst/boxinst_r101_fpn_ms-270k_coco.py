# BoxInst, R-101-FPN, COCO 3x.
_base_ = './boxinst_r50_fpn_ms-270k_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
