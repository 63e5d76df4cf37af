# DiscoBox R-50 COCO 3x with the paper's text where it differs from the
# release (the default, discobox_solov2_r50_fpn_3x_coco.py): L_nce as the
# InfoNCE of Sec. 3.4 (one softmax, tau 1) weighted alpha_nce 0.1 (Sec.
# 4.2, SOLOv2), the correspondence solved on the teacher's cost volume by
# Sinkhorn with the geometric term (Sec. 3.3, Appendix B), mean-field
# quantised to 0.3 / 0.7 (Alg. 1), and the bank as Sec. 3.6 / Appendix C.3
# describe it: objects of at least 32 x 32 px pushed after all losses, up
# to 10 partners sampled at random.
_base_ = './discobox_solov2_r50_fpn_3x_coco.py'

model = dict(
    mask_head=dict(
        mean_field=dict(base=0.3),
        correspondence=dict(
            method='sinkhorn', solve_on='teacher', bank_push='after_losses'),
        loss_corr=dict(release_double_softmax=False, loss_weight=0.1)))
custom_hooks = [
    _base_.discobox_ema_hook,
    dict(
        _base_.discobox_bank_hook,
        bank=dict(
            _base_.discobox_bank_hook.bank,
            min_size=31.99,  # sides >= 32 px (the rule is '>')
            max_retrieval=10,
            retrieval='random'))
]
