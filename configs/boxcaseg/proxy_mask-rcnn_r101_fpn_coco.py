# BoxCaseg stage 3: Proxy Mask R-CNN, R-101-FPN, COCO (the paper's COCO
# backbone, Table 2). Everything else as proxy_mask-rcnn_r50_fpn_coco.py:
# the proxy file from tools/boxcaseg/generate_proxy_masks.py, masks with
# proxy box agreement < 0.95 left out of the mask loss (paper Sec. 3.4),
# maskrcnn-benchmark's default 1x schedule (90k iterations x 16 images,
# lr 0.02, steps 60k/80k; see the R-50 file).
_base_ = './proxy_mask-rcnn_r50_fpn_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet101_caffe')))
