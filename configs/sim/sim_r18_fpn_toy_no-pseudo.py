# Ablation: SIM toy without the pseudo-mask loss (Eq. 8); prototypes,
# pseudo masks, the bank and copy-paste with its loss stay.
_base_ = './sim_r18_fpn_toy.py'

model = dict(mask_head=dict(loss_pseudo=None))
