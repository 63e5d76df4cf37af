# Ablation (the paper's Table 3, second row): SIM toy without the online
# copy-paste and its loss; no memory bank either.
_base_ = './sim_r18_fpn_toy.py'

model = dict(data_preprocessor=dict(copy_paste=None))
custom_hooks = [_base_.custom_hooks[0]]
