# Copyright (c) mmboxseg contributors. All rights reserved.
"""Time training steps of one or more configs on the same batches.

    python tools/analysis_tools/benchmark_train_step.py \
        configs/condinst/condinst_r18_fpn_toy.py \
        configs/boxinst/boxinst_r18_fpn_toy.py [--iters 30] [--warmup 5]

Builds each config's model, data preprocessor, optimizer wrapper and
training data loader, runs ``warmup`` untimed steps then ``iters`` timed
ones (data loading excluded: the batches are fetched before the clock
starts), each config in its own process, and prints one JSON line per
config with the median and mean step time in ms, the peak resident memory
of its process in MiB, and, for every config after the first, its time
ratio to the first.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from mmengine.config import Config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def load_batches(cfg, num):
    from mmengine.runner import Runner
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches, it = [], iter(loader)
    for _ in range(num):
        batches.append(next(it))
    return batches


def time_config(path, args):
    from mmengine.optim import build_optim_wrapper

    from mmboxseg.registry import MODELS
    from mmboxseg.utils import adopt_mmboxseg_scope
    cfg = adopt_mmboxseg_scope(Config.fromfile(path))
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model)
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    batches = load_batches(cfg, args.warmup + args.iters)
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        model.train_step(batch, optim)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1000)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(
        config=path,
        median_ms=round(statistics.median(times), 1),
        mean_ms=round(statistics.mean(times), 1),
        peak_rss_mib=round(peak_mib, 1),
        iters=args.iters,
        batch_size=cfg.train_dataloader.batch_size,
        torch_threads=torch.get_num_threads())


def _child(path, args, queue):
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    queue.put(time_config(path, args))


def main():
    import multiprocessing as mp
    args = parse_args()
    ctx = mp.get_context('spawn')
    first = None
    for path in args.configs:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(path, args, queue))
        proc.start()
        result = queue.get()
        proc.join()
        if first is None:
            first = result
        else:
            result['time_ratio_to_first'] = round(
                result['median_ms'] / first['median_ms'], 3)
        print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
