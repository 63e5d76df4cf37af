# Copyright (c) mmboxseg contributors. All rights reserved.
"""Time training steps of one or more configs on the same batches.

    python tools/analysis_tools/benchmark_train_step.py \
        configs/condinst/condinst_r18_fpn_toy.py \
        configs/boxinst/boxinst_r18_fpn_toy.py [--iters 30] [--warmup 5] \
        [--rounds 1] [--device cpu]

Builds each config's model, data preprocessor, optimizer wrapper and
training data loader, runs ``warmup`` untimed steps then ``iters`` timed
ones (data loading excluded: the batches are fetched before the clock
starts), each config in its own process, and prints one JSON line per
config with the median and mean step time in ms, the peak resident memory
of its process in MiB (and the peak CUDA memory with ``--device cuda``),
and, for every config after the first, its time ratio to the first.
With ``--rounds R`` the configs are timed R times in alternation (a shared
or throttled machine drifts between runs); the figures are then medians
over rounds, and the ratio is the median of the per-round ratios.

The config's ``custom_hooks`` run around every step as in training (e.g.
BoxTeacher's EMA teacher update is part of its step time), with a minimal
runner holding ``model``, ``iter`` and ``message_hub``.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument(
        '--synthetic',
        metavar='HxW',
        help='time on random HxW images with 10 random boxes each instead '
        "of the config's data (e.g. 800x1333 for COCO resolution without "
        'COCO); the train pipeline still runs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings, e.g. model.pseudo_cfg.iou_thr=0.0; an '
        'option whose parent key a config lacks is skipped for that config '
        '(listed under skipped_options)')
    return parser.parse_args()


def write_synthetic_data(root, size, num_images, num_classes, seed=0):
    """Random images and boxes in a COCO file under ``root``."""
    import os

    import cv2
    import numpy as np
    rng = np.random.RandomState(seed)
    h, w = size
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        name = f'{i:04d}.jpg'
        img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        cv2.imwrite(os.path.join(root, 'images', name), img)
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
        for _ in range(10):
            bw, bh = rng.randint(w // 16, w // 3), rng.randint(h // 16, h // 3)
            x, y = rng.randint(0, w - bw), rng.randint(0, h - bh)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=int(rng.randint(num_classes)) + 1,
                    bbox=[float(x), float(y),
                          float(bw), float(bh)],
                    area=float(bw * bh),
                    iscrowd=0))
    categories = [
        dict(id=c + 1, name=f'class_{c}') for c in range(num_classes)
    ]
    with open(os.path.join(root, 'train.json'), 'w') as f:
        json.dump(
            dict(images=images, annotations=anns, categories=categories), f)
    return tuple(c['name'] for c in categories)


def load_batches(cfg, num):
    from mmengine.runner import Runner
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches, it = [], iter(loader)
    for _ in range(num):
        batches.append(next(it))
    return batches


def _has_parent(cfg, key):
    """Whether the dict or list that ``key`` (dotted) sets exists."""
    node = cfg.to_dict()
    for part in key.split('.')[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, (dict, list))


def time_config(path, args):
    from types import SimpleNamespace

    from mmengine.logging import MessageHub
    from mmengine.optim import build_optim_wrapper

    from mmboxseg.registry import HOOKS, MODELS
    from mmboxseg.utils import adopt_mmboxseg_scope
    cfg = Config.fromfile(path)
    skipped = []
    for key, value in (getattr(args, 'cfg_options', None) or {}).items():
        if _has_parent(cfg, key):
            cfg.merge_from_dict({key: value})
        else:
            skipped.append(key)
    cfg = adopt_mmboxseg_scope(cfg)
    if args.synthetic:
        import tempfile
        size = tuple(int(v) for v in args.synthetic.lower().split('x'))
        root = tempfile.mkdtemp(prefix='mmboxseg_bench_')
        classes = write_synthetic_data(
            root, size,
            cfg.train_dataloader.batch_size * (args.warmup + args.iters),
            cfg.model.bbox_head.num_classes)
        dataset = cfg.train_dataloader.dataset
        dataset.update(
            data_root=root,
            ann_file='train.json',
            data_prefix=dict(img='images/'),
            metainfo=dict(classes=classes))
        cfg.train_dataloader.batch_sampler = None
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model).to(args.device)
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    hooks = [HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
    runner = SimpleNamespace(
        model=model, iter=0, message_hub=MessageHub.get_current_instance())
    for hook in hooks:
        hook.before_train(runner)
    batches = load_batches(cfg, args.warmup + args.iters)
    cuda = args.device == 'cuda'
    times = []
    for i, batch in enumerate(batches):
        runner.iter = i
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for hook in hooks:
            hook.before_train_iter(runner, i, batch)
        model.train_step(batch, optim)
        for hook in hooks:
            hook.after_train_iter(runner, i, batch)
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1000)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = {}
    if cuda:
        extra['peak_cuda_mib'] = round(
            torch.cuda.max_memory_allocated() / 2**20, 1)
        extra['gpu'] = torch.cuda.get_device_name()
    return dict(
        config=path,
        median_ms=round(statistics.median(times), 1),
        mean_ms=round(statistics.mean(times), 1),
        peak_rss_mib=round(peak_mib, 1),
        iters=args.iters,
        batch_size=cfg.train_dataloader.batch_size,
        torch_threads=torch.get_num_threads(),
        data=args.synthetic or 'config',
        ema_updates=int(getattr(model, 'ema_updates', -1)),
        skipped_options=skipped,
        **extra)


def _child(path, args, queue):
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    queue.put(time_config(path, args))


def _time_in_child(ctx, path, args):
    import queue as queue_module
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(path, args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f'{path}: the timing process failed '
                                   f'(exit code {proc.exitcode}); see above')
    proc.join()
    return result


def main():
    import multiprocessing as mp
    args = parse_args()
    ctx = mp.get_context('spawn')
    rounds = []
    for _ in range(args.rounds):
        rounds.append(
            [_time_in_child(ctx, path, args) for path in args.configs])
    for i, path in enumerate(args.configs):
        runs = [r[i] for r in rounds]
        result = dict(runs[-1])
        for key in ('median_ms', 'mean_ms', 'peak_rss_mib'):
            result[key] = round(statistics.median(r[key] for r in runs), 1)
        if args.rounds > 1:
            result['rounds'] = args.rounds
            result['median_ms_per_round'] = [r['median_ms'] for r in runs]
        if i > 0:
            result['time_ratio_to_first'] = round(
                statistics.median(r[i]['median_ms'] / r[0]['median_ms']
                                  for r in rounds), 3)
        print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
