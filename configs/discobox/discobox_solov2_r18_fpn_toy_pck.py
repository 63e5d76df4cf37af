# PCK@alpha of the toy DiscoBox model on toy correspondence pairs (the same
# object warped by a known similarity transform; python
# tools/misc/make_toy_correspondence_pairs.py --out data/toy_pairs). Test
# only:
#   mim test mmboxseg configs/discobox/discobox_solov2_r18_fpn_toy_pck.py \
#       --checkpoint work_dirs/discobox_solov2_r18_fpn_toy/iter_1500.pth
_base_ = './discobox_solov2_r18_fpn_toy.py'

test_dataloader = dict(
    _base_.pair_test_dataloader,
    _delete_=True,
    batch_size=8,
    num_workers=1,
    dataset=dict(
        _base_.pair_test_dataloader.dataset,
        data_root='data/toy_pairs/',
        ann_file='pairs.csv',
        data_prefix=dict(img='images/'),
        metainfo=_base_.metainfo,
        pipeline=[
            dict(type='LoadCorrespondencePair', scale=(128, 128)),
            dict(type='PackDetInputs', meta_keys=_base_.pair_meta_keys)
        ]))
test_evaluator = dict(_base_.pck_evaluator, _delete_=True)
