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

pair_scale = (320, 320)
test_pipeline = [
    dict(type='LoadCorrespondencePair', scale=pair_scale),
    dict(type='PackDetInputs', meta_keys=_base_.pair_meta_keys)
]
test_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _scope_='mmboxseg',
        type='PFPascalPairDataset',
        data_root='data/PF-PASCAL/',
        ann_file='test_pairs.csv',
        data_prefix=dict(img='JPEGImages/'),
        test_mode=True,
        pipeline=test_pipeline))
test_evaluator = dict(
    _delete_=True,
    _scope_='mmboxseg',
    type='PCKMetric',
    alphas=(0.05, 0.1, 0.15),
    normalisations=('bbox', 'image'))
