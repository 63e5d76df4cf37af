# BoxTeacher (Cheng et al., CVPR 2023) pieces that every BoxTeacher config
# adds to the BoxInst config it inherits. Values from the public code's
# config.py / Base-BoxTeacher.yaml; see configs/boxteacher/README.md.

# Alg. 1 and Eq. 1; score_mode='code' switches to the public code's weight
boxteacher_pseudo_cfg = dict(
    iou_thr=0.5, score_thr=0.0, mask_thr=0.5, score_mode='paper')
# Eq. 2: lambda_pixel 0.5 (dice), lambda_affinity 0.1 (Eqs. 3-5)
boxteacher_pseudo_losses = dict(
    fix_reduction=True,
    loss_pseudo_mask=dict(
        type='DiceLoss',
        use_sigmoid=True,
        activate=True,
        eps=5e-6,
        loss_weight=0.5),
    loss_pseudo_affinity=dict(
        type='NoiseReducedAffinityLoss',
        kernel_size=3,
        dilation=2,
        smooth_kernel=3,
        affinity_thresh=0.5,
        loss_weight=0.1))

# Student colour augmentation (dataset_mapper.py): 1x "strong" ...
strong_color_aug = [
    dict(
        type='ColorJitter',
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        prob=0.8),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.299))
]
# ... and 3x "strongv2", which adds a 3x3 Gaussian blur with p = 0.5
strong_color_blur_aug = strong_color_aug + [
    dict(type='GaussianBlur', kernel_size=3, sigma=(0.1, 2.0), prob=0.5)
]

# What a BoxTeacher config merges into the BoxInst model it inherits
boxteacher_model = dict(
    type='BoxTeacher',
    data_preprocessor=dict(type='TwoViewBoxSupDataPreprocessor'),
    pseudo_cfg=boxteacher_pseudo_cfg,
    inference_with='teacher',
    mask_head=dict(
        type='BoxTeacherMaskHead',
        pseudo_warmup_iters=10000,
        **boxteacher_pseudo_losses))


def _two_views(student_aug):
    """The last train transform: teacher and student views of the same
    geometry (mmdet MultiBranch); replaces the base's PackDetInputs."""
    return dict(
        type='MultiBranch',
        branch_field=['teacher', 'student'],
        teacher=[dict(type='PackDetInputs')],
        student=[*student_aug, dict(type='PackDetInputs')])


boxteacher_views = _two_views(strong_color_aug)
boxteacher_views_blur = _two_views(strong_color_blur_aug)
del _two_views

# EMA teacher: theta_T <- 0.999 theta_T + 0.001 theta_S, with the public
# code's min(m, 1 - 1/(t+1)) ramp, before each iteration's forward.
ema_teacher_hook = dict(
    type='EMATeacherHook',
    momentum=0.999,
    ramp=True,
    start_iter=0,
    buffers='ema',
    update='before_step')
