# BoxTeacher, R-101-FPN, COCO 3x (boxteacher_r101_3x.yaml).
_base_ = './boxteacher_r50_fpn_ms-270k_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
