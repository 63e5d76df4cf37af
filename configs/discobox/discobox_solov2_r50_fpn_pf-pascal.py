# Semantic correspondence on PF-PASCAL's test pairs (PCK@alpha, DiscoBox
# Table 4) with a DiscoBox model trained on VOC 2012 aug: test only, e.g.
#   mim test mmboxseg configs/discobox/discobox_solov2_r50_fpn_pf-pascal.py \
#       --checkpoint work_dirs/discobox_solov2_r50_fpn_6x_voc-aug/epoch_72.pth
# The paper trains on VOC minus the PF-PASCAL validation/test images
# (release: tools/get_voctraining_excluding_pfpascaltesting.py).
# Expected layout (NC-Net/SCOT's CSV plus the bboxA/bboxB columns taken
# from PF-PASCAL's Annotations/*.mat; see PFPascalPairDataset):
#   data/PF-PASCAL/test_pairs.csv
#   data/PF-PASCAL/JPEGImages/
_base_ = './discobox_solov2_r50_fpn_6x_voc-aug.py'

test_dataloader = dict(
    _base_.pair_test_dataloader,
    _delete_=True,
    dataset=dict(
        _base_.pair_test_dataloader.dataset,
        data_root='data/PF-PASCAL/',
        ann_file='test_pairs.csv',
        data_prefix=dict(img='JPEGImages/')))
test_evaluator = dict(_base_.pck_evaluator, _delete_=True)
