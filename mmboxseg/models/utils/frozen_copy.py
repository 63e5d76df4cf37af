# Copyright (c) mmboxseg contributors. All rights reserved.
import torch.nn as nn


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a persistent buffer, in place.

    Used for EMA teachers and momentum encoders. Their tensors keep their
    names, so they are still saved in checkpoints under the same keys and
    still restored on ``--resume`` or by ``load_checkpoint``. Because they
    are no longer parameters, they are also out of:

    - ``model.parameters()``, so no optimizer (whatever the config's
      ``optim_wrapper``) holds them or keeps state for them;
    - DDP's gradient buckets and gradient clipping.

    They never need ``requires_grad``: the EMA hook writes them under
    ``torch.no_grad``. Not compatible with
    ``SyncBatchNorm.convert_sync_batchnorm`` applied *after* freezing,
    which expects parameters.

    Args:
        module (nn.Module): Module to freeze (e.g. a teacher detector).

    Returns:
        nn.Module: The same module.
    """
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:  # e.g. conv bias=False stays None
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return module
