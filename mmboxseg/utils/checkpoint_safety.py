# Copyright (c) mmboxseg contributors. All rights reserved.
"""Let torch >= 2.6 load mmengine training checkpoints with
``weights_only=True`` left on.

``torch.load`` refuses any global that is not allow-listed.  An mmengine
0.10.7 training checkpoint (``--resume``, ``mim test --checkpoint``) pickles,
besides tensors and plain containers, the message hub's
:class:`~mmengine.logging.HistoryBuffer` objects and the numpy arrays,
dtypes and scalars they hold.  We allow exactly those types, never
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` (which turns the check off for every
file).

``builtins.getattr`` is the one dangerous global such a file holds: mmengine's
``HistoryBuffer.__getstate__`` copies the class-level table of statistics
functions (``HistoryBuffer.min``, ...) into every pickled buffer, and pickle
stores those functions as ``getattr(HistoryBuffer, 'min')``.  Allowing
``getattr`` would let a crafted file reach any attribute of an allowed
object, so instead :func:`make_history_buffer_pickle_clean` drops that table
from the pickled state (``HistoryBuffer.__setstate__`` rebuilds it from the
class, where ``register_statistics`` keeps custom statistics anyway).
Checkpoints written after ``import mmboxseg`` therefore load with exactly
the globals of :func:`mmengine_checkpoint_safe_globals`.  A checkpoint
written by plain mmengine still holds ``getattr``; resume from it fails
with torch's "Unsupported global" error rather than being trusted.
"""
import codecs
import collections

import numpy as np
import torch

_REGISTERED = False


def numpy_safe_globals() -> list:
    """Numpy types that mmengine's message hub pickles."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    safe = [np.ndarray, np.dtype, _reconstruct, scalar]
    # Unpickling a dtype instance BUILDs its state on its concrete class,
    # numpy.dtypes.<Name>DType on numpy 2; allow those classes (plain data
    # types, no callables).
    dtypes_mod = getattr(np, 'dtypes', None)
    if dtypes_mod is not None:
        safe += [
            cls for cls in vars(dtypes_mod).values()
            if isinstance(cls, type) and issubclass(cls, np.dtype)
        ]
    return safe


def mmengine_checkpoint_safe_globals() -> list:
    """Every non-tensor global an mmengine 0.10.7 training checkpoint
    holds."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [
        HistoryBuffer,
        collections.OrderedDict,
        collections.Counter,
        codecs.encode,
    ] + numpy_safe_globals()


def _history_buffer_state(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the statistics-method table
    (functions pickle as ``getattr`` calls; the class rebuilds the table)."""
    state = self.__dict__.copy()
    state.pop('statistics_methods', None)
    return state


def make_history_buffer_pickle_clean() -> None:
    """Patch ``HistoryBuffer.__getstate__`` (idempotent)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state


def register_checkpoint_safe_globals() -> None:
    """Allow-list the types of :func:`mmengine_checkpoint_safe_globals` in
    ``torch.serialization`` (idempotent; a no-op on torch < 2.4)."""
    global _REGISTERED
    if _REGISTERED:
        return
    make_history_buffer_pickle_clean()
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return
    add_safe_globals(mmengine_checkpoint_safe_globals())
    _REGISTERED = True
