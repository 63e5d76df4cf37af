# Copyright (c) mmboxseg contributors. All rights reserved.
"""Save the weights a config's model has at initialisation (seeded), as a
checkpoint that ``tools/test.py`` / ``mim test`` accept: the "untrained
network" row of a benchmark (e.g. PCK of raw, ImageNet-free features).

    python tools/analysis_tools/init_checkpoint.py \
        configs/discobox/discobox_solov2_r18_fpn_toy.py \
        work_dirs/init/discobox_toy_init.pth [--seed 0]
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.runner import set_random_seed


def save_init_checkpoint(config: str, out: str, seed: int = 0) -> str:
    from mmboxseg.registry import MODELS
    from mmboxseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(config)
    set_random_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(seed=seed, config=osp.basename(config))), out)
    print(f'initial weights of {config} (seed {seed}) saved to {out}')
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('out')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    save_init_checkpoint(args.config, args.out, args.seed)


if __name__ == '__main__':
    main()
