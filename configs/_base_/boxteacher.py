# BoxTeacher (Cheng et al., CVPR 2023) pieces that every BoxTeacher config
# adds to the BoxInst config it inherits. Values from the public code's
# config.py / Base-BoxTeacher.yaml; see configs/boxteacher/README.md.

# Alg. 1 and the mask-aware score, as the public code (config.py IOU_THR,
# SCORE_THR, TEACHER_MASK_THRESHOLD; boxteacher.py / postprocess): rank by
# sqrt(c * mbar), weigh by c^(1/4) mbar^(1/2); score_mode='paper' is Eq. 1
boxteacher_pseudo_cfg = dict(
    iou_thr=0.5, score_thr=0.0, mask_thr=0.5, score_mode='code')
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

# Student colour augmentation (dataset_mapper.py): "strong" (config.py's
# default AUG_TYPE, which the released r50_1x yaml inherits) ...
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

# What a BoxTeacher config merges into the BoxInst model it inherits.
# The teacher sees the teacher view resized to the test scale (condinst.py
# resize_images with INPUT.MAX_SIZE_TEST / MIN_SIZE_TEST = 1333 / 800), in
# train mode (TEACHER_EVAL=False: BN with batch statistics); evaluation
# uses the teacher (USE_TEACHER_INFERENCE) and the code's mask-aware test
# score sqrt(sqrt(cls * ctr) * mbar) (postprocess).
boxteacher_model = dict(
    type='BoxTeacher',
    data_preprocessor=dict(type='TwoViewBoxSupDataPreprocessor'),
    pseudo_cfg=boxteacher_pseudo_cfg,
    teacher_scale=(1333, 800),
    teacher_mode='train',
    inference_with='teacher',
    mask_head=dict(
        type='BoxTeacherMaskHead',
        pseudo_warmup_iters=10000,
        test_score='mask_aware',
        **boxteacher_pseudo_losses))


def _two_views(student_aug):
    """The last train transform: teacher and student views of the same
    geometry (mmdet MultiBranch); replaces the base's PackDetInputs."""
    return dict(
        type='MultiBranch',
        branch_field=['teacher', 'student'],
        teacher=[dict(type='PackDetInputs')],
        student=[*student_aug, dict(type='PackDetInputs')])


# 1x (the paper's Table 1 row marked "trained without strong
# augmentation"; the released 1x checkpoint's 32.6 val AP is Table 8's
# no-augmentation row): the student sees the teacher's colours ...
boxteacher_views_plain = _two_views([])
# ... the released r50_1x yaml as written (AUG_TYPE "strong" from config.py;
# Table 8's 1x "strong" row, 32.2) ...
boxteacher_views = _two_views(strong_color_aug)
# ... and 3x (the r50/r101 3x yamls: AUG_TYPE "strongv2")
boxteacher_views_blur = _two_views(strong_color_blur_aug)
del _two_views

# EMA teacher (ema_hook.py, train_net.py): theta_T <- m theta_T + (1 - m)
# theta_S with m = min(0.999, 1 - 1/(t+1)), before each iteration's forward,
# on the parameters only; the whole state (buffers too) is copied at
# iteration 0, after which the teacher keeps its own BN statistics.
ema_teacher_hook = dict(
    type='EMATeacherHook',
    momentum=0.999,
    ramp=True,
    start_iter=0,
    buffers='keep',
    update='before_step')
