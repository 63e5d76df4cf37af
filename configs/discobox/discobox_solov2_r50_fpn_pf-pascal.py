# Semantic correspondence on PF-PASCAL's test pairs (PCK@alpha, DiscoBox
# Table 4) with a DiscoBox model trained on VOC 2012 aug minus every image
# of PF-PASCAL's validation and test pairs (Sec. 4.4; release
# tools/get_voctraining_excluding_pfpascaltesting.py). Make the training
# file, train (validation: VOC 2012 val), then test (PCK):
#   python tools/misc/exclude_pf_pascal_images.py \
#       data/voc/annotations/voc_2012_train_aug_cocofmt.json \
#       data/PF-PASCAL/val_pairs.csv data/PF-PASCAL/test_pairs.csv \
#       --out data/voc/annotations/voc_2012_train_aug_excluding_pfpascal.json
#   mim train mmboxseg configs/discobox/discobox_solov2_r50_fpn_pf-pascal.py
#   mim test mmboxseg configs/discobox/discobox_solov2_r50_fpn_pf-pascal.py \
#       --checkpoint work_dirs/discobox_solov2_r50_fpn_pf-pascal/epoch_72.pth
# Expected layout (NC-Net/SCOT's CSV plus the bboxA/bboxB columns taken
# from PF-PASCAL's Annotations/*.mat; see PFPascalPairDataset):
#   data/PF-PASCAL/test_pairs.csv
#   data/PF-PASCAL/JPEGImages/
_base_ = './discobox_solov2_r50_fpn_6x_voc-aug.py'

train_dataloader = dict(
    dataset=dict(
        ann_file='annotations/voc_2012_train_aug_excluding_pfpascal.json'))

test_dataloader = dict(
    _base_.pair_test_dataloader,
    _delete_=True,
    dataset=dict(
        _base_.pair_test_dataloader.dataset,
        data_root='data/PF-PASCAL/',
        ann_file='test_pairs.csv',
        data_prefix=dict(img='JPEGImages/')))
test_evaluator = dict(_base_.pck_evaluator, _delete_=True)
