# BoxCaseg stage 2: Proxy Mask R-CNN, R-101-FPN, PASCAL VOC 2012 aug: the
# release's retrain config (retrain/maskrcnn-benchmark/
# e2e_mask_rcnn_R_101_FPN_4x_voc_aug_cocostyle.yaml: lr 0.0075 for 6 images
# per iteration, 22.5k iterations, step at 15k, shorter side 800) with the
# paper's drop of masks whose proxy box agreement is < 0.95 (Sec. 3.4).
# Train file: voc_2012_train_aug_cocofmt_proxy.json, written by
# tools/boxcaseg/generate_proxy_masks.py. Details in the R-50 file.
_base_ = './proxy_mask-rcnn_r50_fpn_voc-aug.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet101_caffe')))
