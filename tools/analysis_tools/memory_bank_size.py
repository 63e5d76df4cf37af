# Copyright (c) mmboxseg contributors. All rights reserved.
"""Memory of SIM's copy-paste bank at a given image size.

Fills a :class:`mmboxseg.models.utils.MemoryBank` with ``length`` synthetic
entries of ``HxW`` images carrying ``--instances`` instances each (what
``MemoryBankHook`` would hold once full), and prints the bytes held by the
bank's tensors (their storage, counted exactly) and the bank's documented
upper bound. Example, the default bank at COCO scale with
COCO's 7.3 objects per image and with the worst case:

    python tools/analysis_tools/memory_bank_size.py --size 800x1333 \
        --instances 7
    python tools/analysis_tools/memory_bank_size.py --size 800x1333 \
        --instances 100
"""
import argparse
import json
import math

import torch

from mmboxseg.models.utils import MemoryBank


def measure(size, instances, length=100, max_instances=100):
    h, w = size
    bank = MemoryBank(length=length, max_instances=max_instances)
    gen = torch.Generator().manual_seed(0)
    for _ in range(length + 1):  # one more than fits: FIFO keeps `length`
        bank.push(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen),
            torch.tensor([[0.0, 0.0, w / 2, h / 2]] * instances),
            torch.zeros(instances, dtype=torch.long),
            torch.rand(
                instances, math.ceil(h / 4), math.ceil(w / 4), generator=gen),
            torch.rand(instances, generator=gen))
    return dict(
        size=f'{h}x{w}',
        length=len(bank),
        instances=instances,
        nbytes=bank.nbytes(),
        bound_bytes=bank.bound_bytes((h, w)),
        nbytes_mib=round(bank.nbytes() / 2**20, 1),
        bound_mib=round(bank.bound_bytes((h, w)) / 2**20, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', default='800x1333', help='HxW')
    parser.add_argument('--instances', type=int, default=7)
    parser.add_argument('--length', type=int, default=100)
    parser.add_argument('--max-instances', type=int, default=100)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split('x'))
    print(
        json.dumps(
            measure((h, w), args.instances, args.length, args.max_instances)))


if __name__ == '__main__':
    main()
