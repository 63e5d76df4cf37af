# Box-supervised SOLOv2 without teacher: the toy run with the MIL loss only
# (no self-consistency, no correspondence, no EMA teacher, no bank), the
# paper's Table 3 first row and the baseline of the step-time benchmark.
_base_ = './discobox_solov2_r18_fpn_toy.py'

model = dict(with_mean_field=False, with_correspondence=False)
custom_hooks = []
