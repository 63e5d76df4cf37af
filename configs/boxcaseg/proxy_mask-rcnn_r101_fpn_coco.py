# BoxCaseg stage 2: Proxy Mask R-CNN, R-101-FPN, COCO (the paper's COCO
# backbone). Everything else as proxy_mask-rcnn_r50_fpn_coco.py: the proxy
# file from tools/boxcaseg/generate_proxy_masks.py, masks with proxy box
# agreement < 0.95 left out of the mask loss (paper Sec. 3.4), mmdet's 2x
# schedule (the paper: maskrcnn-benchmark defaults; see the R-50 file).
_base_ = './proxy_mask-rcnn_r50_fpn_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
