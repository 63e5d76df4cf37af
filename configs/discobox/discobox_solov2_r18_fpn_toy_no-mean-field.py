# Ablation of the toy run: no structured (mean-field) teacher, i.e. neither
# self-consistency loss; MIL and the correspondence branch stay.
_base_ = './discobox_solov2_r18_fpn_toy.py'

model = dict(with_mean_field=False)
