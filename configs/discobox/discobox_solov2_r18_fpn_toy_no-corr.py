# Ablation of the toy run: no correspondence branch (no L_nce, no
# cross-image potential, no object bank); MIL and self-consistency stay.
_base_ = './discobox_solov2_r18_fpn_toy.py'

model = dict(with_correspondence=False)
custom_hooks = [_base_.custom_hooks[0]]
