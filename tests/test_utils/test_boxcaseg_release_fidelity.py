# Copyright (c) mmboxseg contributors. All rights reserved.
"""BoxCaseg's configs and data path against the release (hustvl/BoxCaseg).

Every number below is the release's, re-derived here from the release's
own formulas (file and line in each test), not read from our configs:
the merged configs must reproduce them. See the fidelity table in
configs/boxcaseg/README.md."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import BaseDataset, ConcatDataset
from mmengine.optim.scheduler import PolyLR

from mmboxseg.registry import DATA_SAMPLERS, MODELS
from mmboxseg.utils import register_all_modules

register_all_modules()

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'boxcaseg')
SEG_COCO = 'boxcaseg_segmenter_hrnetv2p-w48_coco-duts.py'
SEG_COCO_PAPER = ('boxcaseg_segmenter_hrnetv2p-w48_coco-duts_'
                  'paper-9to7-lr4e-3.py')
SEG_VOC = 'boxcaseg_segmenter_hrnetv2p-w48_voc-aug-duts.py'
SEG_TOY = 'boxcaseg_segmenter_r18_toy.py'

# the release's data-set sizes and launch settings
NUM_DUTS_SINGLE = 7991  # DUTS-TR-Single (paper Sec. 4.2.3)
NUM_VOC_BOXES = 25815  # voc_2012_train_aug_cocostyle.json annotations
GPUS, PER_GPU = 2, 16  # train_*.sh: 2 GPUs; *_trans_fcn.yaml: 16 per GPU
WEAKLY_RATIO = 0.6875  # train_cd.sh --weakly_ratio


def load(name):
    return Config.fromfile(osp.join(CFG, name))


def pipeline_step(pipeline, type_):
    steps = [t for t in pipeline if t['type'] == type_]
    assert len(steps) == 1, (type_, pipeline)
    return steps[0]


# ---------------------------------------------------------------- item 18


@pytest.mark.parametrize(
    'name',
    ['proxy_mask-rcnn_r50_fpn_coco.py', 'proxy_mask-rcnn_r101_fpn_coco.py'])
def test_proxy_mask_rcnn_coco_is_maskrcnn_benchmark_1x(name):
    """Paper Sec. 4: "default settings in the maskrcnn benchmark", i.e.
    e2e_mask_rcnn_R_101_FPN_1x.yaml + config/defaults.py (SOLVER) of the
    release's retrain/maskrcnn-benchmark."""
    cfg = load(name)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == 90000  # MAX_ITER
    warmup, steps = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and not warmup.by_epoch
    assert warmup.start_factor == pytest.approx(1 / 3)  # WARMUP_FACTOR
    assert (warmup.begin, warmup.end) == (0, 500)  # WARMUP_ITERS
    assert steps.type == 'MultiStepLR' and not steps.by_epoch
    assert steps.milestones == [60000, 80000] and steps.gamma == 0.1
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 0.02,
                                                                  0.9, 1e-4)
    # BIAS_LR_FACTOR 2, WEIGHT_DECAY_BIAS 0
    assert cfg.optim_wrapper.paramwise_cfg == dict(
        bias_lr_mult=2.0, bias_decay_mult=0.0)
    # IMS_PER_BATCH 16 = 8 GPUs x 2 (mmdet's launch) for lr 0.02
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.model.roi_head.mask_head.drop_thr == 0.95
    check_maskrcnn_benchmark_backbone(cfg, 101 if 'r101' in name else 50)


def check_maskrcnn_benchmark_backbone(cfg, depth):
    # MODEL.WEIGHT catalog://ImageNetPretrained/MSRA/R-<depth>: Caffe-style
    # MSRA weights, FrozenBatchNorm2d, INPUT.PIXEL_MEAN on BGR255, no std
    backbone = cfg.model.backbone
    assert backbone.depth == depth and backbone.style == 'caffe'
    assert backbone.norm_cfg.requires_grad is False and backbone.norm_eval
    assert backbone.frozen_stages == 1  # CONV_BODY freeze at stage 2
    assert backbone.init_cfg.checkpoint == \
        f'open-mmlab://detectron2/resnet{depth}_caffe'
    pre = cfg.model.data_preprocessor
    assert pre.mean == [102.9801, 115.9465, 122.7717]
    assert pre.std == [1.0, 1.0, 1.0] and pre.bgr_to_rgb is False


def test_toy_proxy_mask_rcnn_keeps_the_from_scratch_recipe():
    cfg = load('proxy_mask-rcnn_r18_fpn_toy.py')
    assert cfg.model.backbone.style == 'pytorch'
    assert cfg.model.backbone.norm_cfg.requires_grad is True
    assert cfg.model.data_preprocessor.std == [58.395, 57.12, 57.375]


@pytest.mark.parametrize('name', [
    'proxy_mask-rcnn_r50_fpn_voc-aug.py', 'proxy_mask-rcnn_r101_fpn_voc-aug.py'
])
def test_proxy_mask_rcnn_voc_is_the_release_retrain_config(name):
    """retrain/maskrcnn-benchmark/e2e_mask_rcnn_R_101_FPN_4x_voc_aug_
    cocostyle.yaml: BASE_LR 0.0075, WEIGHT_DECAY 1e-4, STEPS (15000,),
    MAX_ITER 22500, IMS_PER_BATCH 6, 20 classes (+ background)."""
    cfg = load(name)
    assert cfg.train_cfg.max_iters == 22500
    assert cfg.param_scheduler[1].milestones == [15000]
    assert cfg.param_scheduler[0].start_factor == pytest.approx(1 / 3)
    assert cfg.optim_wrapper.optimizer.lr == 0.0075
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.optim_wrapper.paramwise_cfg.bias_lr_mult == 2.0
    assert cfg.train_dataloader.batch_size * 3 == 6
    assert cfg.auto_scale_lr.base_batch_size == 6
    assert cfg.model.roi_head.bbox_head.num_classes == 20
    check_maskrcnn_benchmark_backbone(cfg, 101 if 'r101' in name else 50)


# ---------------------------------------------------------------- item 19


def release_poly_lr(base_lr, num_iters, cur_iters, power=0.9):
    # joint_training/lib/utils/utils.py l.173-177 (adjust_learning_rate)
    return base_lr * ((1 - float(cur_iters) / num_iters)**power)


def lr_after(scheduler_cfg, base_lr, iters):
    """The LR mmengine's PolyLR of the config gives at iteration
    ``iters``, stepped for real on a one-parameter SGD."""
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=base_lr)
    kwargs = {k: v for k, v in scheduler_cfg.items() if k != 'type'}
    sched = PolyLR(optim, **kwargs)
    for _ in range(iters):
        optim.step()
        sched.step()
    return optim.param_groups[0]['lr']


def test_segmenter_coco_schedule_is_the_release_epoch_50_of_200():
    """cd_train.py l.237, 254-255: epoch_iters = int(num_f / (1 -
    weakly_ratio) / 16 / 2); poly over END_EPOCH = 200 epochs
    (cd_trans_fcn.yaml); the released model is the epoch-50 checkpoint
    (joint_training/README.md: COCO_epoch_50)."""
    cfg = load(SEG_COCO)
    epoch_iters = int(NUM_DUTS_SINGLE / (1 - WEAKLY_RATIO) / PER_GPU / GPUS)
    assert epoch_iters == 799
    assert cfg.train_cfg.max_iters == 50 * epoch_iters == 39950
    (poly, ) = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.power == 0.9 and not poly.by_epoch
    assert (poly.begin, poly.end) == (0, 200 * epoch_iters)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 0.008,
                                                                  0.9, 1e-4)
    # the LR where training stops is the release's at epoch 50
    lr_stop = lr_after(poly, 0.008, 39950)
    assert lr_stop == pytest.approx(
        release_poly_lr(0.008, 200 * epoch_iters, 39950), rel=1e-5)
    assert lr_stop > 0.006
    assert cfg.train_dataloader.batch_size == PER_GPU
    assert cfg.auto_scale_lr.base_batch_size == PER_GPU * GPUS
    # checkpoints every 5 epochs, as cd_train.py l.266
    assert cfg.default_hooks.checkpoint.interval == 5 * epoch_iters
    assert cfg.randomness.seed == 1234  # setup_seed(1234)
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'


def test_segmenter_voc_schedule_is_the_release_40_epochs():
    """pd_train.py l.230, 249: epoch_iters = int(len(dataset) / 16 / 2)
    over the union of VOC boxes and DUTS-Single; pd_trans_fcn.yaml: LR
    0.004, END_EPOCH 40, momentum 0.9, wd 1e-4; poly over all 40."""
    cfg = load(SEG_VOC)
    epoch_iters = int((NUM_VOC_BOXES + NUM_DUTS_SINGLE) / PER_GPU / GPUS)
    assert epoch_iters == 1056
    assert cfg.train_cfg.max_iters == 40 * epoch_iters == 42240
    (poly, ) = cfg.param_scheduler
    assert poly.power == 0.9 and poly.end == 40 * epoch_iters
    opt = cfg.optim_wrapper.optimizer
    assert (opt.lr, opt.momentum, opt.weight_decay) == (0.004, 0.9, 1e-4)
    assert cfg.train_dataloader.batch_size == PER_GPU


def test_segmenter_paper_variant_keeps_the_papers_text():
    cfg = load(SEG_COCO_PAPER)
    assert cfg.train_dataloader.sampler.source_ratio == [9, 7]
    assert cfg.optim_wrapper.optimizer.lr == 0.004
    # the rest is the release's
    assert cfg.train_cfg.max_iters == 39950


class Source(BaseDataset):
    METAINFO = dict(classes=('x', ))

    def __init__(self, n):
        self.n = n
        super().__init__(serialize_data=False, lazy_init=False)

    def load_data_list(self):
        return [dict(k=k, overlapped=False) for k in range(self.n)]


def build_sampler(sampler_cfg, dataset):
    return DATA_SAMPLERS.build(dict(sampler_cfg, dataset=dataset, seed=0))


def box_counts(sampler, n_box, batches, batch_size=PER_GPU):
    it = iter(sampler)
    return [
        sum(next(it) < n_box for _ in range(batch_size))
        for _ in range(batches)
    ]


def test_coco_sampler_realises_the_release_weakly_ratio():
    """train_cd.sh --weakly_ratio 0.6875: int(32 * 0.6875) = 22 box crops
    of every 32 (combined_random_sampler.py l.32), 11 of each GPU's 16."""
    cfg = load(SEG_COCO)
    concat = ConcatDataset([Source(60), Source(20)])
    sampler = build_sampler(cfg.train_dataloader.sampler, concat)
    counts = box_counts(sampler, 60, 50)
    assert set(counts) == {11}
    assert sum(counts) / (50 * PER_GPU) == WEAKLY_RATIO
    assert int(PER_GPU * GPUS * WEAKLY_RATIO) == 2 * counts[0]
    # the overlap drop of the release (p = 0.75, IoU > 0.5)
    assert cfg.train_dataloader.sampler.overlap_drop_prob == 0.75
    assert 'overlap_iou_thr' not in cfg.train_dataloader.dataset.datasets[0]
    import inspect

    from mmboxseg.datasets import BoxCropDataset
    assert inspect.signature(
        BoxCropDataset).parameters['overlap_iou_thr'].default == 0.5
    # the class default is the release's too
    from mmboxseg.datasets.samplers import BoxSalientRatioSampler
    assert BoxSalientRatioSampler(concat, PER_GPU).num_per_source == [11, 5]


def test_voc_sampler_is_the_union_of_both_sources():
    """pd_train.py l.194: DistributedSampler(pd_train_dataset) over the
    concatenation: no fixed ratio, on average the union's share."""
    cfg = load(SEG_VOC)
    assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
    assert 'overlap_drop_prob' not in cfg.train_dataloader.sampler
    concat = ConcatDataset([Source(90), Source(30)])
    sampler = build_sampler(cfg.train_dataloader.sampler, concat)
    counts = box_counts(sampler, 90, 300)
    assert len(set(counts)) > 3  # batches vary
    assert np.mean(counts) / PER_GPU == pytest.approx(0.75, abs=0.02)
    # every shuffled pass holds each sample once
    it = iter(build_sampler(cfg.train_dataloader.sampler, concat))
    assert sorted(next(it) for _ in range(120)) == list(range(120))


@pytest.mark.parametrize('name', [SEG_COCO, SEG_VOC, SEG_TOY])
def test_crop_sizes_flip_and_test_crops(name):
    """PDtransform(320, 288) (pd_train.py l.182): box crops straight to
    288; salient images 320 -> vertical flip p=0.5 (image[::-1],
    hybrid_data_loader.py l.64-66) -> random crop 288; test crops the
    exact box resized to 320 (test_for_pascal.py l.125). The toy config
    keeps the same 288:320 proportions at 64 px."""
    cfg = load(name)
    box, sal = (d.pipeline for d in cfg.train_dataloader.dataset.datasets)
    jitter = pipeline_step(box, 'BoxJitterCrop')
    assert jitter.center_jitter == 0.25
    assert tuple(jitter.scale_range) == (0.5, 1.5)
    crop = 64 if name == SEG_TOY else 288
    resize = pipeline_step(box, 'Resize')
    assert tuple(resize.scale) == (crop, crop) and not resize.keep_ratio
    assert [t['type']
            for t in sal[2:5]] == ['Resize', 'RandomFlip', 'RandomCrop']
    salient_scale = 71 if name == SEG_TOY else 320
    assert tuple(sal[2].scale) == (salient_scale, salient_scale)
    assert sal[3].direction == 'vertical' and sal[3].prob == 0.5
    assert tuple(sal[4].crop_size) == (crop, crop)
    test = cfg.test_dataloader.dataset.pipeline
    assert pipeline_step(test, 'BoxJitterCrop').jitter is False
    assert tuple(pipeline_step(test, 'Resize').scale) == (salient_scale, ) * 2


@pytest.mark.parametrize('name,alpha', [(SEG_COCO, 0.6), (SEG_VOC, 0.7),
                                        (SEG_TOY, 0.6)])
def test_alpha_and_loss_weights(name, alpha):
    """--fcn_ratio 0.6 (train_cd.sh) / 0.7 (train_pd.sh); loss_mil +
    loss_pairwise (x 0.05 inside PairwiseLoss, pd_loss.py) + loss_f, all
    at weight 1 (function.py l.113); test: min-max, threshold 0.5."""
    cfg = load(name)
    assert cfg.model.decode_head.alpha == alpha
    assert cfg.model.loss_smooth.loss_weight == 0.05
    assert cfg.model.loss_mil.loss_weight == 1.0
    assert cfg.model.loss_pixel_weight == 1.0
    assert cfg.model.test_cfg == dict(minmax_normalise=True, mask_thr=0.5)


# ------------------------------------------------------- normalisation


def preprocess(name, pixels_bgr, sources):
    """Run the config's data preprocessor on 2x2 images whose every pixel
    is ``pixels_bgr[k]`` (as mmcv loads them: BGR, uint8)."""
    from mmdet.structures import DetDataSample
    cfg = load(name)
    pre = MODELS.build(cfg.model.data_preprocessor)
    inputs, samples = [], []
    for bgr, source in zip(pixels_bgr, sources):
        img = torch.tensor(bgr, dtype=torch.uint8).view(3, 1, 1)
        inputs.append(img.expand(3, 2, 2).clone())
        meta = dict(img_shape=(2, 2), ori_shape=(2, 2))
        if source is not None:
            meta['source'] = source
        samples.append(DetDataSample(metainfo=meta))
    out = pre(dict(inputs=inputs, data_samples=samples), training=True)
    return out['inputs'][:, :, 0, 0]


@pytest.mark.parametrize('name', [SEG_COCO, SEG_VOC, SEG_TOY])
def test_crop_normalisation_by_hand(name):
    """hybrid_data_loader.py ToTensor l.80-141 (train), ToTensor_T
    l.162-185 (test crops); skimage's resize maps uint8 to [0, 1] first.
    Box crops: x/255 - (102.9801, 115.9465, 122.7717)/255 per R, G, B.
    Salient images: x/max(x), then ImageNet mean/std."""
    b, g, r = 10, 20, 200  # BGR as loaded; max(x) = 200
    got = preprocess(name, [(b, g, r)] * 3, ['box', 'salient', None])
    box = [
        r / 255 - 102.9801 / 255, g / 255 - 115.9465 / 255,
        b / 255 - 122.7717 / 255
    ]
    sal = [(r / 200 - 0.485) / 0.229, (g / 200 - 0.456) / 0.224,
           (b / 200 - 0.406) / 0.225]
    np.testing.assert_allclose(got[0].numpy(), box, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1].numpy(), sal, rtol=1e-5, atol=1e-6)
    # a crop without a source (the proxy-mask tool's) is a box crop
    np.testing.assert_allclose(got[2].numpy(), box, rtol=1e-5, atol=1e-6)
    # the salient max is over the whole crop, all channels
    got = preprocess(name, [(255, 20, 100)], ['salient'])
    np.testing.assert_allclose(
        got[0].numpy(), [(100 / 255 - 0.485) / 0.229,
                         (20 / 255 - 0.456) / 0.224, (1.0 - 0.406) / 0.225],
        rtol=1e-5)


def test_common_normalisation_option_is_mmdets():
    from mmboxseg.models.detectors.boxcaseg_segmenter import \
        BoxCasegDataPreprocessor
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    common = BoxCasegDataPreprocessor(
        normalisation='common', mean=mean, std=std, bgr_to_rgb=True)
    ref = MODELS.build(
        dict(type='DetDataPreprocessor', mean=mean, std=std, bgr_to_rgb=True))
    img = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
    from mmdet.structures import DetDataSample
    data = dict(
        inputs=[img],
        data_samples=[DetDataSample(metainfo=dict(source='salient'))])
    torch.testing.assert_close(
        common(dict(data))['inputs'],
        ref(dict(data))['inputs'])
    with pytest.raises(ValueError, match='common'):
        BoxCasegDataPreprocessor(mean=mean, std=std)
    with pytest.raises(ValueError, match='per_source'):
        BoxCasegDataPreprocessor(normalisation='imagenet')


# ------------------------------------------------------ salient labels


@pytest.mark.parametrize('name', [SEG_COCO, SEG_VOC, SEG_TOY])
def test_salient_masks_are_kept_raw(name):
    """The release reads DUTS masks as they are and divides them by their
    maximum (ToTensor l.119-122): soft targets on anti-aliased edges."""
    cfg = load(name)
    sal = cfg.train_dataloader.dataset.datasets[1].pipeline
    assert pipeline_step(sal, 'LoadSalientMask').thr is None


def test_segmenter_divides_labels_by_their_maximum():
    from mmdet.structures import DetDataSample
    from mmengine.structures import PixelData
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='BoxCasegSegmenter',
            backbone=dict(
                type='ResNet',
                depth=18,
                out_indices=(0, 1),
                init_cfg=None,
                norm_eval=False),
            decode_head=dict(
                type='BoxCasegHead',
                in_channels=[64, 128],
                in_index=[0, 1],
                channels=8,
                alpha=0.6)))
    # the release's per-source normalisation unless a config says otherwise
    assert type(model.data_preprocessor).__name__ == \
        'BoxCasegDataPreprocessor'
    model.train()
    raw = torch.zeros(32, 32, dtype=torch.uint8)
    raw[8:24, 8:24] = 255
    raw[8:24, 8] = 128  # an anti-aliased edge
    box = torch.zeros(32, 32, dtype=torch.uint8)
    box[4:20, 6:22] = 1
    samples = []
    for source, label in (('box', box), ('salient', raw)):
        s = DetDataSample(metainfo=dict(source=source, img_shape=(32, 32)))
        s.gt_sem_seg = PixelData(sem_seg=label[None])
        samples.append(s)
    inputs = torch.randn(2, 3, 32, 32)
    losses = model.loss(inputs, samples)
    logits = model.head_logits(inputs, torch.tensor([False, True]))
    soft = raw.float() / 255
    expected = F.binary_cross_entropy_with_logits(logits['fused'][0], soft)
    assert losses['loss_pixel'].item() == pytest.approx(
        expected.item(), rel=1e-5)
    labels = torch.stack([box.float(), soft])
    assert losses['loss_mil'].item() == pytest.approx(
        model.loss_mil(logits['weak'], labels).item(), rel=1e-5)
    torch.testing.assert_close(soft.unique(),
                               torch.tensor([0.0, 128 / 255, 1.0]))
