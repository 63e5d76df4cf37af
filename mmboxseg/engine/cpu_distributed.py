# Copyright (c) mmboxseg contributors. All rights reserved.
"""Multi-process training on CPUs (gloo), for machines without a GPU.

mmengine 0.10.7 assumes a GPU per process under ``--launcher pytorch``: it
calls ``torch.cuda.set_device`` (which fails on a CPU-only torch) and wraps
the model with ``device_ids=[LOCAL_RANK]`` (which DDP refuses for CPU
modules).  :func:`setup_cpu_distributed` initialises the gloo process group
itself, so mmengine skips its own initialisation, and selects
:class:`CPUDistributedDataParallel`.
"""
import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


# Registered in mmengine's root registry: the runner looks model wrappers up
# there with ``MODEL_WRAPPERS.get`` (no scope switch), where a child
# registry's modules are invisible.
@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for CPU modules: drops the
    ``device_ids`` the runner passes (DDP requires ``None`` on the CPU)."""

    def __init__(self, module, **kwargs) -> None:
        kwargs.pop('device_ids', None)
        kwargs.pop('output_device', None)
        super().__init__(module=module, **kwargs)


def setup_cpu_distributed(cfg) -> bool:
    """Prepare ``cfg`` for a ``--launcher pytorch`` run without CUDA.

    Returns:
        bool: Whether the CPU (gloo) set-up was applied.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise ValueError(
            f'--launcher {launcher} needs GPUs; on a CPU-only machine use '
            '--launcher pytorch (tools/dist_train.sh)')
    import torch.distributed as dist
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(
        type='CPUDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True
