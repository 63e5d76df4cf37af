# Copyright (c) mmboxseg contributors. All rights reserved.
"""Train and evaluate the whole zoo side by side on the bundled toy data.

    python tools/analysis_tools/benchmark_zoo.py [--device cpu|cuda] [--quick]

Every method is trained with the same toy data, seed (0) and schedule
(``--iters``, LR warm-up 100 iterations, x0.1 at 80 %; the method configs'
own iteration-valued settings such as warm-ups are left as they are), each
in its own process, then tested on the toy test split:

- CondInst trained with masks (the upper bound);
- the box baseline: mmboxseg BoxInst's detected boxes pasted as masks;
- mmdet 3.3.0's own BoxInst (``boxinst_r18_fpn_toy_mmdet.py``: mmdet's
  modules, the toy data, backbone and schedule swapped in);
- mmboxseg's BoxInst, BoxTeacher, SIM and DiscoBox;
- the BoxCaseg pipeline: segmenter, proxy masks, Proxy Mask R-CNN (its
  train time is the sum of the three stages);
- self-training (BoxTeacher's Table 7 shape): mmboxseg BoxInst's masks
  exported for every training box by ``tools/misc/export_pseudo_masks.py``
  (``--box-fallback``), then CondInst trained on them as if they were
  ground truth.

mmdet's and mmboxseg's BoxInst are also trained with the extra seeds of
``--peer-seeds`` (default 1 and 2; toy BoxInst varies strongly with the
seed), and the report compares them seed by seed.

BoxTeacher, SIM and DiscoBox train on the toy file that also carries masks,
packed as evaluation-only ``eval_masks`` and scored by
:class:`~mmboxseg.engine.hooks.PseudoMaskQualityHook` (no loss reads them);
BoxCaseg's proxy masks are scored once by the proxy tool (``--gt-ann``).

Writes ``docs/benchmark.md`` (``--out``; one table with segm AP/AP50/AP75,
box AP, the ratio to the upper bound, train wall time, median train-step
time, peak memory, inference images/s and pseudo-mask mIoU) and the plot
``docs/benchmark_zoo.png`` (segm AP against train time), and keeps each
run's ``result.json`` under ``--work-dir``. ``--resume`` reuses results
that exist. ``--quick`` trains 10 iterations per model: a smoke run of the
whole path in a few minutes, whose numbers mean nothing.
"""
import argparse
import datetime
import importlib.util
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(ROOT, 'data', 'toy')
SALIENT = osp.join(ROOT, 'data', 'toy_salient')
ANN = osp.join(DATA, 'annotations')

# name, label, supervision, config (relative to ROOT), scored pseudo masks
UPPER = 'condinst'
PEER = 'mmdet_boxinst'
OURS = 'boxinst'
METHODS = [
    (UPPER, 'CondInst (upper bound)', 'masks',
     'configs/condinst/condinst_r18_fpn_toy.py', False),
    ('box_baseline', 'box baseline (BoxInst boxes as masks)', 'boxes', None,
     False),
    (PEER, 'mmdet 3.3.0 BoxInst (peer)', 'boxes',
     'configs/boxinst/boxinst_r18_fpn_toy_mmdet.py', False),
    (OURS, 'mmboxseg BoxInst', 'boxes',
     'configs/boxinst/boxinst_r18_fpn_toy.py', False),
    ('self_training', 'CondInst on BoxInst\'s exported masks', 'boxes',
     'configs/condinst/condinst_r18_fpn_toy.py', False),
    ('boxteacher', 'BoxTeacher', 'boxes',
     'configs/boxteacher/boxteacher_r18_fpn_toy.py', True),
    ('sim', 'SIM', 'boxes', 'configs/sim/sim_r18_fpn_toy.py', True),
    ('discobox', 'DiscoBox', 'boxes',
     'configs/discobox/discobox_solov2_r18_fpn_toy.py', True),
    ('boxcaseg', 'BoxCaseg (segmenter + Proxy Mask R-CNN)', 'boxes + salient',
     'configs/boxcaseg/proxy_mask-rcnn_r18_fpn_toy.py', False),
]
BOXCASEG_SEGMENTER = 'configs/boxcaseg/boxcaseg_segmenter_r18_toy.py'
QUICK_ITERS = 10
# rows that reuse the mmboxseg BoxInst row's model run after it
DERIVED = ('box_baseline', 'self_training')
# the interleaved train-step timing of the two BoxInst rows (not a table row)
PAIRED = 'paired_step'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument(
        '--quick',
        action='store_true',
        help=f'{QUICK_ITERS} iterations per model: a smoke run')
    parser.add_argument(
        '--iters',
        type=int,
        default=1000,
        help='training iterations of every model (default 1000)')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_zoo')
    parser.add_argument('--out', default='docs/benchmark.md')
    parser.add_argument(
        '--plot', help='PNG path (default: benchmark_zoo.png beside --out)')
    parser.add_argument(
        '--only',
        nargs='+',
        choices=[m[0] for m in METHODS],
        help='run only these rows (the table shows every row whose result '
        'exists under --work-dir)')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='reuse the result.json of rows already run')
    parser.add_argument(
        '--peer-seeds',
        type=int,
        nargs='*',
        help='extra seeds of the two BoxInst rows (default: 1 2; with '
        '--quick: 1)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides for the rows trained from their own config '
        '(not BoxCaseg\'s stages, not self-training), e.g. for an ablation '
        'with --only and another --work-dir')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--child-seed', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.iters = QUICK_ITERS
    if args.peer_seeds is None:
        args.peer_seeds = [1] if args.quick else [1, 2]
    if args.iters < 1:
        parser.error('--iters must be >= 1')
    args.work_dir = osp.abspath(args.work_dir)
    if args.plot is None:
        args.plot = osp.join(osp.dirname(args.out) or '.', 'benchmark_zoo.png')
    return args


# -- config edits ---------------------------------------------------------
def set_schedule(cfg, iters, work_dir):
    """The shared schedule: ``iters`` iterations, the warm-up capped at
    ``iters``, MultiStepLR milestones scaled, one checkpoint at the end, no
    validation (the benchmark tests once, on the test split)."""
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for sched in cfg.param_scheduler:
        if 'milestones' in sched:
            sched.milestones = [int(m * iters / old) for m in sched.milestones]
        if sched.get('end', 0) >= old:
            sched.end = iters
        elif sched.get('end', 0) > iters:
            sched.end = iters
    cfg.default_hooks.checkpoint.update(
        interval=iters, max_keep_ckpts=1, by_epoch=False)
    cfg.default_hooks.logger.interval = min(20, iters)
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    cfg.work_dir = work_dir
    return cfg


def with_pseudo_mask_quality(cfg, ann_file, interval=1):
    """Train on ``ann_file`` (the same boxes, plus masks), pack the masks as
    evaluation-only ``eval_masks`` and add :class:`PseudoMaskQualityHook`."""
    from mmboxseg.datasets.transforms import eval_mask_pipeline
    dataset = cfg.train_dataloader.dataset
    dataset.ann_file = ann_file
    dataset.pipeline = eval_mask_pipeline(dataset.pipeline)
    hooks = list(cfg.get('custom_hooks', None) or [])
    hooks.append(dict(type='PseudoMaskQualityHook', interval=interval))
    cfg.custom_hooks = hooks
    return cfg


# -- one run (child process) ----------------------------------------------
def _median(buffer_name, message_hub):
    if buffer_name not in message_hub.log_scalars:
        return None
    values = message_hub.get_scalar(buffer_name).data[0]
    return float(statistics.median(values)) if len(values) else None


def _peak_memory_mib(device):
    if device == 'cuda':
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_and_test(config,
                   work_dir,
                   iters,
                   device,
                   pseudo=False,
                   test=True,
                   dump=None,
                   cfg_options=None,
                   seed=None):
    """Train one config in this process; returns its figures."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmboxseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    cfg = Config.fromfile(osp.join(ROOT, config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    set_schedule(cfg, iters, work_dir)
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
    if pseudo:
        with_pseudo_mask_quality(
            cfg, 'annotations/instances_train_with_masks.json')
    if device == 'cuda':
        import torch
        torch.cuda.reset_peak_memory_stats()
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    result = dict(
        config=config,
        iters=iters,
        seed=cfg.randomness.seed,
        train_s=time.perf_counter() - start,
        step_s=_median('train/time', runner.message_hub),
        data_s=_median('train/data_time', runner.message_hub),
        peak_mem_mib=_peak_memory_mib(device),
        checkpoint=osp.join(work_dir, f'iter_{iters}.pth'))
    if pseudo and 'train/pseudo_miou' in runner.message_hub.log_scalars:
        hub = runner.message_hub
        miou = hub.get_scalar('train/pseudo_miou').data[0]
        frac = hub.get_scalar('train/pseudo_valid_frac').data[0]
        last = max(1, len(miou) // 4)
        # the last quarter of the logged steps: the pseudo masks of the
        # trained model, not of its warm-up
        result.update(
            pseudo_miou=float(miou[-last:].mean()),
            pseudo_valid_frac=float(frac[-last:].mean()),
            pseudo_steps=int(len(miou)))
    if test:
        if dump:
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=dump))
        metrics = runner.test()
        batch = cfg.test_dataloader.batch_size
        test_step = _median('test/time', runner.message_hub)
        result.update(
            metrics={
                k: float(v)
                for k, v in metrics.items()
            },
            infer_img_s=batch / test_step if test_step else None)
    return result


def paired_step_time(work_dir, device, rounds=12, steps=10, num_batches=8):
    """Train-step time of mmboxseg's and mmdet's BoxInst, interleaved.

    Step times of separate runs drift with the machine (mmdet's own
    seed-1 run went from 0.33 to 0.45 s/step on the 2-core VM), so the
    speed verdict compares the two models in one process: each starts
    from its seed-0 benchmark checkpoint (the trained state: positives,
    gates and warm-ups as at the end of training; fresh weights when the
    checkpoint is missing), gets the same ``num_batches`` pre-loaded
    batches (data loading excluded), and the two take turns, ``steps``
    optimiser steps each per round, the order alternating by round. The
    first round is a warm-up and is dropped.

    Returns:
        dict: ``ours_step_s`` and ``peer_step_s`` (medians over all timed
        steps), ``ratio`` (ours / peer of those medians), ``round_ratios``
        (ours / peer of each round's median) and the sizes used.
    """
    import torch
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.runner import Runner

    from mmboxseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    step_tool = _load_tool('tools/analysis_tools/benchmark_train_step.py')
    configs = {m[0]: m[3] for m in METHODS}
    runners, batches, times = {}, {}, {}
    for key in (OURS, PEER):
        cfg = Config.fromfile(osp.join(ROOT, configs[key]))
        iters = 1000
        ckpt_dir = osp.join(osp.dirname(work_dir), key)
        result_path = osp.join(ckpt_dir, 'result.json')
        if osp.exists(result_path):
            with open(result_path) as f:
                iters = json.load(f)['iters']
        set_schedule(cfg, iters, osp.join(work_dir, key))
        checkpoint = osp.join(ckpt_dir, f'iter_{iters}.pth')
        cfg.load_from = checkpoint if osp.exists(checkpoint) else None
        runner = Runner.from_cfg(cfg)
        runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
        runner.load_or_resume()
        runner.model.train()
        batches[key] = step_tool.load_batches(cfg, num_batches)
        runners[key] = runner
        times[key] = []
    # mmdet's BoxInst reads the pairwise warm-up from the message hub;
    # mmboxseg's from its checkpointed step counter
    MessageHub.get_current_instance().update_info('iter', iters)
    round_ratios = []
    for r in range(rounds):
        order = (OURS, PEER) if r % 2 == 0 else (PEER, OURS)
        this_round = {}
        for key in order:
            runner = runners[key]
            spent = []
            for s in range(steps):
                batch = batches[key][(r * steps + s) % num_batches]
                if device == 'cuda':
                    torch.cuda.synchronize()
                start = time.perf_counter()
                runner.model.train_step(batch, runner.optim_wrapper)
                if device == 'cuda':
                    torch.cuda.synchronize()
                spent.append(time.perf_counter() - start)
            this_round[key] = spent
        if r == 0:
            continue  # warm-up round
        for key in (OURS, PEER):
            times[key] += this_round[key]
        round_ratios.append(
            statistics.median(this_round[OURS]) /
            statistics.median(this_round[PEER]))
    ours, peer = statistics.median(times[OURS]), statistics.median(times[PEER])
    return dict(
        ours_step_s=ours,
        peer_step_s=peer,
        ratio=ours / peer,
        round_ratios=round_ratios,
        rounds=rounds - 1,
        steps=steps,
        batches=num_batches,
        from_checkpoints=all(runners[k].cfg.load_from for k in runners))


def _load_tool(path):
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_boxcaseg(work_dir, iters, device):
    """Segmenter -> proxy masks (scored against the toy masks) -> Proxy Mask
    R-CNN, all at the shared schedule."""
    seg_dir = osp.join(work_dir, 'segmenter')
    seg = train_and_test(
        BOXCASEG_SEGMENTER, seg_dir, iters, device, test=False)
    proxy_ann = osp.join(work_dir, 'instances_train_proxy.json')
    tool = _load_tool('tools/boxcaseg/generate_proxy_masks.py')
    start = time.perf_counter()
    stats = tool.main([
        osp.join(ROOT, BOXCASEG_SEGMENTER), seg['checkpoint'],
        osp.join(ANN, 'instances_train.json'), proxy_ann, '--img-prefix',
        osp.join(DATA, 'images', 'train'), '--gt-ann',
        osp.join(ANN, 'instances_train_with_masks.json'), '--device', device
    ])
    proxy_s = time.perf_counter() - start
    result = train_and_test(
        METHODS[-1][3],
        osp.join(work_dir, 'proxy_mask_rcnn'),
        iters,
        device,
        cfg_options={'train_dataloader.dataset.ann_file': proxy_ann})
    result.update(
        stages_s=dict(
            segmenter=seg['train_s'],
            proxy_masks=proxy_s,
            proxy_mask_rcnn=result['train_s']),
        train_s=seg['train_s'] + proxy_s + result['train_s'],
        peak_mem_mib=max(seg['peak_mem_mib'], result['peak_mem_mib']),
        pseudo_miou=stats.get('miou_merged'),
        proxy_drop_rate=stats.get('drop_rate'),
        proxy_drop_thr=stats.get('drop_thr'))
    return result


def run_self_training(work_dir, iters, device, ours):
    """Export BoxInst's masks for every training box (its box where no
    prediction is assigned), then train CondInst on them."""
    os.makedirs(work_dir, exist_ok=True)
    pseudo_ann = osp.join(work_dir, 'instances_train_pseudo.json')
    tool = _load_tool('tools/misc/export_pseudo_masks.py')
    start = time.perf_counter()
    stats = tool.main([
        osp.join(ROOT, ours['config']), ours['checkpoint'],
        osp.join(ANN, 'instances_train.json'), pseudo_ann, '--img-prefix',
        osp.join(DATA, 'images', 'train'), '--box-fallback', '--gt-ann',
        osp.join(ANN, 'instances_train_with_masks.json'), '--device', device
    ])
    export_s = time.perf_counter() - start
    result = train_and_test(
        METHODS[0][3],
        osp.join(work_dir, 'condinst'),
        iters,
        device,
        cfg_options={'train_dataloader.dataset.ann_file': pseudo_ann})
    result.update(
        stages_s=dict(export=export_s, condinst=result['train_s']),
        train_s=result['train_s'] + export_s,
        pseudo_miou=stats.get('miou'),
        export_coverage=stats.get('coverage'))
    return result


def run_child(args):
    name = args.child
    method = {m[0]: m for m in METHODS}.get(name)
    seed = args.child_seed
    work_dir = osp.join(args.work_dir, row_key(name, seed))
    if name == PAIRED:
        os.makedirs(work_dir, exist_ok=True)
        result = paired_step_time(
            work_dir, args.device, rounds=3 if args.quick else 12)
        result.update(iters=args.iters)
    elif name == 'boxcaseg':
        result = run_boxcaseg(work_dir, args.iters, args.device)
    elif name == 'self_training':
        ours = osp.join(args.work_dir, OURS, 'result.json')
        if not osp.exists(ours):
            raise RuntimeError(f'self-training needs the mmboxseg BoxInst '
                               f'row ({ours}): run it first')
        with open(ours) as f:
            result = run_self_training(work_dir, args.iters, args.device,
                                       json.load(f))
    else:
        dump = osp.join(work_dir, 'test_preds.pkl') if name == OURS else None
        result = train_and_test(
            method[3],
            work_dir,
            args.iters,
            args.device,
            pseudo=method[4],
            dump=dump,
            seed=seed,
            cfg_options=args.cfg_options)
        if dump:
            result['test_preds'] = dump
    result.update(name=name, device=args.device)
    with open(osp.join(work_dir, 'result.json'), 'w') as f:
        json.dump(result, f, indent=1)


# -- the parent -----------------------------------------------------------
def row_key(name, seed=None):
    """Work-dir and result key of a row; extra seeds get a suffix."""
    return name if seed is None else f'{name}_seed{seed}'


def box_pseudo_miou(ann_file, stride=4, pad_divisor=32):
    """Reference for the pseudo-mask column: mIoU (%) of the boxes
    themselves as pseudo masks against the toy masks, on the stride-4
    grid of the padded input that the hook scores on (toy images are not
    resized)."""
    import numpy as np
    import torch
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from mmboxseg.engine.hooks.pseudo_mask_quality_hook import (
        pseudo_mask_ious, strided_truth)
    from mmboxseg.models.utils import strided_box_masks
    coco = COCO(ann_file)
    ious = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        if not anns:
            continue
        info = coco.loadImgs(img_id)[0]
        truth = torch.from_numpy(
            np.stack([mask_utils.decode(coco.annToRLE(a))
                      for a in anns]).astype(bool))
        boxes = torch.tensor([a['bbox'] for a in anns], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        hw = [
            -(-size // pad_divisor) * pad_divisor // stride
            for size in (info['height'], info['width'])
        ]
        ious.append(
            pseudo_mask_ious(
                strided_box_masks(boxes, hw, stride),
                strided_truth(truth, hw, stride)))
    return 100 * float(torch.cat(ious).mean())


def run_box_baseline(work_dir, ours):
    if ours is None or 'test_preds' not in ours:
        raise RuntimeError('the box baseline needs the mmboxseg BoxInst row '
                           '(its test predictions)')
    out = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/analysis_tools/eval_box_baseline.py'),
        osp.join(ROOT, ours['config']), ours['test_preds']
    ],
                         check=True,
                         capture_output=True,
                         text=True,
                         cwd=ROOT).stdout
    metrics = json.loads(out.strip().splitlines()[-1])
    result = dict(
        name='box_baseline',
        config=ours['config'],
        iters=ours['iters'],
        metrics=metrics,
        derived_from=OURS)
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'result.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return result


def make_data():
    make = osp.join(ROOT, 'tools/misc/make_toy_dataset.py')
    if not osp.exists(osp.join(ANN, 'instances_train_with_masks.json')):
        subprocess.run([sys.executable, make, '--out', DATA, '--seed', '0'],
                       check=True)
    if not osp.isdir(SALIENT):
        subprocess.run([
            sys.executable, make, '--salient', '--out', SALIENT,
            '--num-salient', '300', '--seed', '0'
        ],
                       check=True)


def machine_line(device):
    import mmdet
    import mmengine
    import torch
    if device == 'cuda':
        hw = torch.cuda.get_device_name(0)
    else:
        model = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                names = [
                    ln.split(':', 1)[1].strip() for ln in f
                    if ln.startswith('model name')
                ]
            model = names[0] if names else model
        except OSError:
            pass
        hw = f'{model}, {len(os.sched_getaffinity(0))} cores'
    return (f'{hw}; torch {torch.__version__}, mmengine '
            f'{mmengine.__version__}, mmdet {mmdet.__version__}, torch '
            f'threads {torch.get_num_threads()}')


def _git_commit():
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                             cwd=ROOT,
                             capture_output=True,
                             text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain'],
                               cwd=ROOT,
                               capture_output=True,
                               text=True,
                               check=True).stdout.strip()
        return out + (' with local changes' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def _fmt(value, spec, missing='–'):
    return missing if value is None else format(value, spec)


def table_rows(results):
    upper = results.get(UPPER, {}).get('metrics', {}).get('coco/segm_mAP')
    rows = []
    for name, label, sup, _, _ in METHODS:
        r = results.get(name)
        if r is None:
            continue
        m = r.get('metrics', {})
        segm = m.get('coco/segm_mAP')
        ratio = segm / upper if upper and segm is not None else None
        mem = r.get('peak_mem_mib')
        step = r.get('step_s')
        rows.append([
            label, sup,
            _fmt(segm, '.3f'),
            _fmt(m.get('coco/segm_mAP_50'), '.3f'),
            _fmt(m.get('coco/segm_mAP_75'), '.3f'),
            _fmt(m.get('coco/bbox_mAP'), '.3f'),
            _fmt(ratio, '.2f'),
            _fmt(r.get('train_s') and r['train_s'] / 60, '.1f'),
            _fmt(step and step * 1000, '.0f'),
            _fmt(mem, '.0f'),
            _fmt(r.get('infer_img_s'), '.1f'),
            _fmt(r.get('pseudo_miou'), '.1f')
        ])
    return rows


HEADER = [
    'method', 'supervision', 'segm AP', 'AP50', 'AP75', 'box AP',
    'segm / upper bound', 'train (min)', 'median step (ms)',
    'peak memory (MiB)', 'inference (img/s)', 'pseudo-mask mIoU (%)'
]


def peer_check(results, seeds=()):
    """mmboxseg BoxInst against mmdet's, seed by seed: segm AP points
    (mmboxseg - mmdet) and the step-time ratio (mmboxseg / mmdet); the
    verdicts use the first seed's run and the mean over the seeds run.
    With the interleaved timing (``results['paired_step']``) the speed
    verdict (``paired_step_ok``) is that timing's ratio; the runs' medians
    are reported beside it."""
    pairs = []
    for seed in [None, *seeds]:
        ours = results.get(row_key(OURS, seed))
        peer = results.get(row_key(PEER, seed))
        if ours and peer:
            pairs.append(
                dict(
                    seed=ours.get('seed', 0) if seed is None else seed,
                    ours=100 * ours['metrics']['coco/segm_mAP'],
                    peer=100 * peer['metrics']['coco/segm_mAP'],
                    ours_step=ours['step_s'],
                    peer_step=peer['step_s']))
    if not pairs:
        return None
    for p in pairs:
        p['diff'] = p['ours'] - p['peer']
        p['ratio'] = p['ours_step'] / p['peer_step']
    first = pairs[0]
    paired = results.get(PAIRED)
    mean_diff = statistics.mean(p['diff'] for p in pairs)
    ratio = statistics.median(p['ratio'] for p in pairs)
    return dict(
        pairs=pairs,
        ap_diff=first['diff'],
        step_ratio=first['ratio'],
        mean_ours=statistics.mean(p['ours'] for p in pairs),
        mean_peer=statistics.mean(p['peer'] for p in pairs),
        mean_diff=mean_diff,
        median_ratio=ratio,
        ap_ok=abs(first['diff']) <= 1.5,
        mean_ap_ok=abs(mean_diff) <= 1.5,
        step_ok=first['ratio'] <= 1.0,
        median_step_ok=ratio <= 1.0,
        paired=paired,
        paired_step_ok=None if paired is None else paired['ratio'] <= 1.0)


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, label, _, _, _ in METHODS:
        r = results.get(name)
        if r is None or 'train_s' not in r:
            continue
        x, y = r['train_s'] / 60, 100 * r['metrics']['coco/segm_mAP']
        ax.scatter([x], [y], s=40)
        ax.annotate(
            label.split(' (')[0], (x, y),
            textcoords='offset points',
            xytext=(5, 4),
            fontsize=8)
    ax.set_xlabel('train wall time (min)')
    ax.set_ylabel('segm AP (toy test split, %)')
    ax.set_title('mmboxseg zoo on the toy data')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_markdown(results, args, total_s, command, reused=()):
    rows = table_rows(results)
    lines = [
        '# Zoo benchmark', '',
        '<!-- written by tools/analysis_tools/benchmark_zoo.py; '
        'edit the tool, not this file -->', '',
        f'Produced by `{command}` on {datetime.date.today().isoformat()} '
        f'(code {_git_commit()}), '
        f'{machine_line(args.device)}. Every model was trained for '
        f'{args.iters} iterations (batch 8 of 128x128 toy images, AdamW '
        '1e-3, LR x0.1 at 80 %, seed 0) in its own process, one after the '
        'other, and tested on the toy test split (60 images). '
        f'This invocation took {total_s / 60:.1f} min' +
        (f'; it reused the results of {len(reused)} rows run before '
         f'(`--resume`: {", ".join(reused)}).' if reused else '.'), ''
    ]
    if args.quick:
        lines += [
            f'**`--quick` smoke run ({args.iters} iterations): the figures '
            'below mean nothing.**', ''
        ]
    lines += [
        '| ' + ' | '.join(HEADER) + ' |',
        '|' + '---|' * len(HEADER),
    ] + ['| ' + ' | '.join(row) + ' |' for row in rows]
    lines += [
        '', f'![segm AP against train time]({osp.basename(args.plot)})', '',
        '- **segm AP, AP50, AP75, box AP**: COCO AP on the toy test split '
        '(mmdet `CocoMetric`, fractions as mmdet prints them).',
        '- **segm / upper bound**: segm AP over that of CondInst trained '
        'with masks.',
        '- **train**: wall time of `runner.train()`; for BoxCaseg the sum '
        'of its three stages (segmenter, proxy masks, Proxy Mask R-CNN).',
        '- **median step**: median of mmengine\'s per-iteration `time` '
        '(data loading included) over all training iterations; for '
        'BoxCaseg the Proxy Mask R-CNN\'s.', '- **peak memory**: ' +
        ('peak CUDA memory allocated by torch' if args.device == 'cuda' else
         'peak resident memory of the training process (data loader '
         'workers not counted)') + '.',
        '- **inference**: test-loop images per second (batch 8, median '
        'batch time, data loading and post-processing included).',
        '- **pseudo-mask mIoU**: BoxTeacher, SIM, DiscoBox: mean over the '
        'last quarter of training of `PseudoMaskQualityHook`\'s '
        '`train/pseudo_miou` (the pseudo masks of the training batch '
        'against the toy masks, on the stride-4 grid; the masks never '
        'reach a loss). BoxCaseg: mIoU of all proxy masks against the toy '
        'masks at full resolution, from `generate_proxy_masks.py --gt-ann`.',
        '- **box baseline**: the mmboxseg BoxInst row\'s detected boxes '
        'pasted as masks (`eval_box_baseline.py`); no training of its own.'
    ]
    check = peer_check(results, args.peer_seeds)
    if check:

        def within(ok):
            return 'within' if ok else 'NOT within'

        def slower(ok):
            return 'not slower' if ok else 'SLOWER'

        lines += [
            '', '## mmboxseg BoxInst against mmdet 3.3.0 BoxInst', '',
            'Same data, schedule and seed per row; segm AP in points, '
            'median train-step time in ms.', '',
            '| seed | mmdet segm AP | mmboxseg segm AP | difference | '
            'mmdet step | mmboxseg step | step ratio |',
            '|---|---|---|---|---|---|---|'
        ] + [
            f'| {p["seed"]} | {p["peer"]:.1f} | {p["ours"]:.1f} | '
            f'{p["diff"]:+.1f} | {1000 * p["peer_step"]:.0f} | '
            f'{1000 * p["ours_step"]:.0f} | {p["ratio"]:.2f} |'
            for p in check['pairs']
        ] + [
            f'| mean | {check["mean_peer"]:.1f} | {check["mean_ours"]:.1f} '
            f'| {check["mean_diff"]:+.1f} | | | '
            f'{check["median_ratio"]:.2f} (median) |', '',
            f'- seed {check["pairs"][0]["seed"]}: difference '
            f'{check["ap_diff"]:+.1f} AP, {within(check["ap_ok"])} 1.5 AP; '
            f'step ratio {check["step_ratio"]:.2f}, '
            f'{slower(check["step_ok"])}.',
            f'- over {len(check["pairs"])} seed(s): mean difference '
            f'{check["mean_diff"]:+.1f} AP, '
            f'{within(check["mean_ap_ok"])} 1.5 AP; median step ratio '
            f'{check["median_ratio"]:.2f}, '
            f'{slower(check["median_step_ok"])}.'
        ]
        paired = check['paired']
        if paired:
            lines += [
                '- interleaved train-step timing (`paired_step`: both '
                'models in one process, ' +
                ('from their seed-0 checkpoints, ' if
                 paired.get('from_checkpoints') else 'from fresh weights, ') +
                f'{paired["steps"]} steps per turn on the same '
                f'{paired.get("batches", 8)} pre-loaded batches, '
                f'{paired["rounds"]} rounds of alternating turns; data '
                'loading excluded): mmboxseg '
                f'{1000 * paired["ours_step_s"]:.0f} ms, mmdet '
                f'{1000 * paired["peer_step_s"]:.0f} ms, ratio '
                f'{paired["ratio"]:.2f} (per round '
                f'{min(paired["round_ratios"]):.2f}-'
                f'{max(paired["round_ratios"]):.2f}), '
                f'**{slower(check["paired_step_ok"])}**. Step times of '
                'separate runs drift with the machine, so this is the '
                'speed verdict; the runs\' medians above are shown as '
                'measured.'
            ]
    selftrain = results.get('self_training')
    if selftrain and 'stages_s' in selftrain:
        lines += [
            '', 'Self-training: BoxInst\'s masks cover '
            f'{selftrain["export_coverage"]:.1f} % of the training boxes '
            '(the rest get their box as mask); export '
            f'{selftrain["stages_s"]["export"] / 60:.1f} min, CondInst '
            f'{selftrain["stages_s"]["condinst"] / 60:.1f} min.'
        ]
    reference = results.get('_reference', {})
    if 'box_pseudo_miou' in reference:
        lines += [
            '', 'Reference for the pseudo-mask column: the training boxes '
            'themselves as pseudo masks score '
            f'{reference["box_pseudo_miou"]:.1f} mIoU on the same stride-4 '
            'grid and '
            f'{reference.get("box_pseudo_miou_full", float("nan")):.1f} at '
            'full resolution (BoxCaseg\'s and self-training\'s scale).'
        ]
    boxcaseg = results.get('boxcaseg')
    if boxcaseg and 'stages_s' in boxcaseg:
        st = boxcaseg['stages_s']
        lines += [
            '', f'BoxCaseg stages: segmenter {st["segmenter"] / 60:.1f} min, '
            f'proxy masks {st["proxy_masks"] / 60:.1f} min, Proxy Mask R-CNN '
            f'{st["proxy_mask_rcnn"] / 60:.1f} min; proxy masks dropped from '
            f'the mask loss at agreement < {boxcaseg["proxy_drop_thr"]}: '
            f'{100 * boxcaseg["proxy_drop_rate"]:.1f} %.'
        ]
    extra = osp.join(osp.dirname(args.out) or '.', 'benchmark_notes.md')
    if osp.exists(extra) and not args.quick:
        lines += [
            '', f'Discussion: [benchmark_notes.md]'
            f'({osp.basename(extra)}).'
        ]
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--device cuda: torch sees no CUDA device')
    command = 'python tools/analysis_tools/benchmark_zoo.py' + ''.join(
        f' {a}' for a in (argv if argv is not None else sys.argv[1:]))
    start = time.perf_counter()
    make_data()
    names = args.only or [m[0] for m in METHODS]
    env = dict(os.environ)
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    results = {}
    # rows that reuse the mmboxseg BoxInst row's model come after it; the
    # extra seeds of the two BoxInst rows last
    order = [(m, None) for m in METHODS if m[0] not in DERIVED] + \
        [(m, None) for m in METHODS if m[0] in DERIVED] + \
        [(m, s) for s in args.peer_seeds
         for m in METHODS if m[0] in (PEER, OURS)]
    reused = []
    for (name, label, _, config, _), seed in order:
        key = row_key(name, seed)
        work_dir = osp.join(args.work_dir, key)
        path = osp.join(work_dir, 'result.json')
        if seed is not None:
            label = f'{label}, seed {seed}'
        run_here = name in names and not (args.resume and osp.exists(path))
        if run_here:
            if name == 'box_baseline':
                run_box_baseline(work_dir, results.get(OURS))
            else:
                os.makedirs(work_dir, exist_ok=True)
                print(
                    f'[benchmark_zoo] {label}: training {args.iters} '
                    f'iterations ({config})',
                    flush=True)
                child = [
                    sys.executable,
                    osp.abspath(__file__), '--child', name, '--iters',
                    str(args.iters), '--device', args.device, '--work-dir',
                    args.work_dir
                ] + ([] if seed is None else ['--child-seed',
                                              str(seed)])
                if args.cfg_options:
                    child += ['--cfg-options'] + [
                        f'{k}={v}' for k, v in args.cfg_options.items()
                    ]
                subprocess.run(child, check=True, env=env, cwd=ROOT)
        if osp.exists(path):
            with open(path) as f:
                results[key] = json.load(f)
            if results[key].get('iters') != args.iters:
                print(f'[benchmark_zoo] {key}: result of '
                      f'{results[key].get("iters")} iterations ignored')
                del results[key]
                continue
            r = results[key]
            if not run_here:
                reused.append(key)
            print(
                f'[benchmark_zoo] {label}: segm AP '
                f'{r["metrics"].get("coco/segm_mAP")}, train '
                f'{_fmt(r.get("train_s"), ".0f")} s',
                flush=True)
    paired_dir = osp.join(args.work_dir, PAIRED)
    paired_path = osp.join(paired_dir, 'result.json')
    both = OURS in results and PEER in results
    # re-timed whenever either checkpoint is new
    stale = not (args.resume and osp.exists(paired_path)) or \
        OURS not in reused or PEER not in reused
    if both and (OURS in names or PEER in names) and stale:
        print(
            '[benchmark_zoo] interleaved train-step timing of the two '
            'BoxInst rows',
            flush=True)
        subprocess.run(
            [
                sys.executable,
                osp.abspath(__file__), '--child', PAIRED, '--iters',
                str(args.iters), '--device', args.device, '--work-dir',
                args.work_dir
            ] + (['--quick'] if args.quick else []),
            check=True,
            env=env,
            cwd=ROOT)
    elif both and osp.exists(paired_path):
        reused.append(PAIRED)
    if both and osp.exists(paired_path):
        with open(paired_path) as f:
            results[PAIRED] = json.load(f)
        print(
            '[benchmark_zoo] interleaved step ratio (mmboxseg / mmdet): '
            f'{results[PAIRED]["ratio"]:.2f}',
            flush=True)
    masks_ann = osp.join(ANN, 'instances_train_with_masks.json')
    results['_reference'] = dict(
        box_pseudo_miou=box_pseudo_miou(masks_ann),
        box_pseudo_miou_full=box_pseudo_miou(masks_ann, stride=1))
    total_s = time.perf_counter() - start
    write_markdown(results, args, total_s, command, reused)
    plot(results, args.plot)
    print(f'[benchmark_zoo] wrote {args.out} and {args.plot} '
          f'({total_s / 60:.1f} min)')
    return results


if __name__ == '__main__':
    main()
