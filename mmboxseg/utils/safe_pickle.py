# Copyright (c) mmboxseg contributors. All rights reserved.
"""Read the pickles mmdet writes (``tools/test.py --out preds.pkl``)
without running code from them.

``pickle.load`` (and ``mmengine.fileio.load`` on a ``.pkl``) calls any
importable callable a file names: a crafted "predictions" file runs a
command. :func:`load_safe_pickle` unpickles with an allow-list instead:
plain containers and scalars (pickle opcodes, no globals), numpy arrays,
dtypes and scalars (and ``codecs.encode``, which old pickle protocols use
for array bytes), ``collections.OrderedDict``, torch dtypes and CPU
tensors. A tensor's storage is pickled as
``torch.storage._load_from_bytes(payload)``, which runs
``torch.load(..., weights_only=False)`` on the payload; here that name
resolves to :func:`_storage_from_bytes`, which loads the payload with
``weights_only=True``. Anything else raises
:class:`pickle.UnpicklingError` naming the file and the global.
"""
import codecs
import collections
import io
import pickle
from typing import Any, Callable, Dict, Tuple

import torch

from .checkpoint_safety import numpy_safe_globals


def _storage_from_bytes(payload: bytes):
    """The storage of a plain-pickled tensor, loaded with torch's
    ``weights_only`` check on."""
    return torch.load(io.BytesIO(payload), weights_only=True)


def _allowed_globals() -> Dict[Tuple[str, str], Callable]:
    from torch._utils import _rebuild_tensor, _rebuild_tensor_v2
    allowed = {
        ('collections', 'OrderedDict'):
        collections.OrderedDict,
        # numpy arrays pickled with protocol < 3 carry their bytes as
        # codecs.encode(latin-1 text): data in, bytes out
        ('_codecs', 'encode'):
        codecs.encode,
        ('torch._utils', '_rebuild_tensor_v2'):
        _rebuild_tensor_v2,
        ('torch._utils', '_rebuild_tensor'):
        _rebuild_tensor,
        ('torch.storage', '_load_from_bytes'):
        _storage_from_bytes,
        ('torch', 'Size'):
        torch.Size,
    }
    for obj in numpy_safe_globals():
        allowed[(obj.__module__, obj.__name__)] = obj
        if obj.__module__ == 'numpy._core.multiarray':  # numpy 1.x pickles
            allowed[('numpy.core.multiarray', obj.__name__)] = obj
    for name in dir(torch):
        value = getattr(torch, name)
        if isinstance(value, torch.dtype):
            allowed[('torch', name)] = value
    return allowed


class _AllowListUnpickler(pickle.Unpickler):

    def __init__(self, file, source: str) -> None:
        super().__init__(file)
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'{self.source}: refusing to load the global '
                f'{module}.{name}; only containers, numbers, strings, numpy '
                'arrays and tensors are read from pickles (a pickle can run '
                'code: do not load files you do not trust)') from None


def load_safe_pickle(path: str) -> Any:
    """Unpickle ``path`` with the allow-list of this module.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: The file names a global outside the
            allow-list, or is not a pickle.
    """
    with open(path, 'rb') as f:
        try:
            return _AllowListUnpickler(f, path).load()
        except pickle.UnpicklingError:
            raise
        except Exception as exc:  # truncated or not a pickle at all
            raise pickle.UnpicklingError(
                f'{path}: not a readable pickle ({type(exc).__name__}: '
                f'{exc})') from exc
