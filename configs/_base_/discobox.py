# DiscoBox (Lan et al., ICCV 2021) pieces that every DiscoBox config uses.
# Numbers and behaviour from the public release (NVlabs/DiscoBox,
# configs/discobox/discobox_solov2_r50_fpn_3x.py and
# mmdet/models/dense_heads/discobox_solov2_head.py), which produced the
# paper's tables; where the paper's text differs, the paper's form is a
# named option (see configs/discobox/README.md, fidelity table, and
# discobox_solov2_r50_fpn_3x_coco_paper-text.py).

# The release switches its teacher on (copy of the student, then EMA) once
# its step counter passes 13000 (single_stage_wsis.py: `cnt > 13000`): the
# copy is taken in (0-based) step 13001 and the teacher is first used, after
# its first EMA update, in step 13002. Before that the student's own
# predictions stand in. The detector's gate and the EMA hook's start share
# this value; toy configs scale it.
teacher_start_iter = 13002

discobox_data_preprocessor = dict(
    type='BoxSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
    mask_stride=4,
    bottom_pixels_removed=0)

discobox_mask_head = dict(
    type='DiscoBoxSOLOv2Head',
    num_classes=80,
    in_channels=256,
    feat_channels=512,
    stacked_convs=4,
    strides=[8, 8, 16, 32, 32],
    scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
    pos_scale=0.2,
    num_grids=[40, 36, 24, 16, 12],
    cls_down_index=0,
    mask_feature_head=dict(
        feat_channels=128,
        start_level=0,
        end_level=3,
        out_channels=256,
        mask_stride=4,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
    # L_mil (Sec. 3.1): projection dice, release dice eps 0.001 + 0.001
    loss_mask=dict(type='BoxProjectionLoss', eps=0.002, loss_weight=1.0),
    loss_cls=dict(
        type='FocalLoss',
        use_sigmoid=True,
        gamma=2.0,
        alpha=0.25,
        loss_weight=1.0),
    mean_field=dict(
        kernel_size=3,
        num_iters=10,
        alpha0=2.0,
        theta0=0.5,
        theta1=30.0,
        base=0.1),
    ts_loss_weight=1.0,
    correspondence=dict(
        method='message_passing',  # the release's; 'sinkhorn': the paper's
        num_iters=10,
        window=9,
        smooth_size=3,
        eps=0.05,
        gamma=1.0,
        feat_size=7,
        mask_size=28,
        min_retrieval=5,
        cross_weight=0.01,
        ts_weight=0.01,
        solve_on='student',  # release solve(..., roi_s_feat)
        bank_push='interleaved'),
    # the release's cross-entropy over softmax(C_u) (double softmax)
    loss_corr=dict(
        type='DenseContrastiveLoss',
        release_double_softmax=True,
        loss_weight=1.0))

discobox_model = dict(
    type='DiscoBox',
    inference_with='student',
    data_preprocessor=discobox_data_preprocessor,
    mask_head=discobox_mask_head,
    gates=dict(
        mode='running_loss',
        ts_thresh=0.3,
        corr_thresh=0.2,
        running_momentum=0.9,
        running_init=2.0,
        teacher_start_iter=teacher_start_iter),
    test_cfg=dict(
        nms_pre=500,
        score_thr=0.1,
        mask_thr=0.4,
        filter_thr=0.05,
        kernel='gaussian',
        sigma=2.0,
        max_per_img=100))

# theta_T <- 0.999 theta_T + 0.001 theta_S before every step from the
# teacher start on; before it the teacher copies the student. BN
# statistics are copied (the release averages parameters only).
discobox_ema_hook = dict(
    type='EMATeacherHook',
    momentum=0.999,
    ramp=False,
    start_iter=teacher_start_iter,
    buffers='copy',
    update='before_step')
discobox_bank_hook = dict(
    type='MemoryBankHook',
    bank=dict(
        type='ObjectMemoryBank',
        num_classes=80,
        length=100,
        # release: stride-4 box sides > 32, i.e. > 128 input pixels
        min_size=128,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.7,
        appear_thresh=0.7,
        ratio_range=(0.9, 1.2),
        max_retrieval=5,
        retrieval='first',
        iou='release'),
    save_in_checkpoint=True)
discobox_hooks = [discobox_ema_hook, discobox_bank_hook]

# What LoadCorrespondencePair adds for keypoint transfer and PCKMetric
# (mmboxseg.datasets.transforms.PAIR_META_KEYS)
pair_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                  'scale_factor', 'pair_width', 'src_keypoints',
                  'trg_keypoints', 'src_bbox', 'trg_bbox', 'keypoint_valid',
                  'trg_keypoints_ori', 'trg_bbox_ori', 'trg_ori_shape',
                  'trg_scale', 'trg_img_path')

# Correspondence test configs: image pairs in PF-PASCAL's CSV format and
# PCK@alpha; a config sets the data set's root, file, prefix and pair size
pair_test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _scope_='mmboxseg',
        type='PFPascalPairDataset',
        test_mode=True,
        pipeline=[
            dict(type='LoadCorrespondencePair', scale=(320, 320)),
            dict(type='PackDetInputs', meta_keys=pair_meta_keys)
        ]))
pck_evaluator = dict(
    _scope_='mmboxseg',
    type='PCKMetric',
    alphas=(0.05, 0.1, 0.15),
    normalisations=('bbox', 'image'))
