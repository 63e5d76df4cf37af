# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.dist import all_gather, broadcast, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmboxseg.registry import HOOKS

BUFFER_POLICIES = ('ema', 'copy', 'keep')
UPDATE_TIMINGS = ('before_step', 'after_step')


def ema_momentum(momentum: float, step: int, ramp: bool = True) -> float:
    """Momentum of EMA update number ``step`` (0-based).

    With ``ramp`` it is ``min(m, 1 - 1 / (t + 1))`` (BoxTeacher's
    ``ema_hook.py``): the first update copies the student and the teacher is
    a plain running mean of the students until ``t`` reaches about
    ``1 / (1 - m)``.  Without it, ``m`` from the first step.
    """
    if step < 0:
        raise ValueError(f'EMA step must be >= 0, got {step}')
    if not ramp:
        return momentum
    return min(momentum, 1.0 - 1.0 / (step + 1))


def paired_tensors(
        teacher: nn.Module,
        student: nn.Module) -> List[Tuple[str, Tensor, Tensor, bool]]:
    """Pair every teacher tensor with the student tensor of the same name.

    Returns:
        list[tuple]: ``(name, teacher_tensor, student_tensor,
        from_parameter)``; ``from_parameter`` tells whether the student
        tensor is a parameter (EMA always) or a buffer (buffer policy).

    Raises:
        KeyError: When a teacher tensor has no student counterpart or the
            shapes differ (matching by name, not by position as mmdet's
            ``MeanTeacherHook`` ``zip`` does, so a mismatch is an error
            rather than a silent mis-pairing).
    """
    teacher_prefix = None
    for name, mod in student.named_modules():
        if mod is teacher:
            teacher_prefix = name + '.'
    student_params = dict(student.named_parameters())
    student_buffers = {
        name: buf
        for name, buf in student.named_buffers()
        if teacher_prefix is None or not name.startswith(teacher_prefix)
    }
    pairs = []
    for name, tensor in list(teacher.named_parameters()) + list(
            teacher.named_buffers()):
        if name in student_params:
            source, from_param = student_params[name], True
        elif name in student_buffers:
            source, from_param = student_buffers[name], False
        else:
            raise KeyError(f'teacher tensor `{name}` has no tensor of the '
                           'same name in the student')
        if source.shape != tensor.shape:
            raise KeyError(f'teacher tensor `{name}` has shape '
                           f'{tuple(tensor.shape)}, the student '
                           f'{tuple(source.shape)}')
        pairs.append((name, tensor, source, from_param))
    return pairs


@torch.no_grad()
def ema_update_(pairs: List[Tuple[str, Tensor, Tensor, bool]],
                momentum: float,
                buffers: str = 'ema') -> None:
    """``theta_T <- m theta_T + (1 - m) theta_S`` (BoxTeacher Sec. 4.1,
    SIM's momentum encoder, DiscoBox's mean teacher), in place.

    Parameters are always averaged. Buffers (BN running statistics, step
    counters) follow ``buffers``: ``'ema'`` averages floating buffers and
    copies integer ones, ``'copy'`` copies them, ``'keep'`` leaves the
    teacher's own.
    """
    if buffers not in BUFFER_POLICIES:
        raise ValueError(f'buffers must be one of {BUFFER_POLICIES}, got '
                         f'{buffers!r}')
    for _, tensor, source, from_param in pairs:
        if not from_param and buffers == 'keep':
            continue
        average = from_param or buffers == 'ema'
        # momentum 0 is a true copy (0 * nan would keep a broken teacher)
        if average and momentum > 0 and tensor.is_floating_point():
            tensor.mul_(momentum).add_(source.detach(), alpha=1 - momentum)
        else:
            tensor.copy_(source.detach())


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Exponential-moving-average teacher shared by BoxTeacher, SIM and
    DiscoBox.

    The model (unwrapped from DDP) holds the teacher as a submodule named
    ``teacher_name`` whose tensors are buffers
    (:func:`mmboxseg.models.utils.freeze_as_buffers`): it is saved in every
    checkpoint, restored by ``--resume`` and never seen by the optimizer.
    The student is ``model.<student_name>`` or, when ``student_name`` is
    None, the model itself minus the teacher. Teacher and student tensors
    are paired by name; the teacher may be a sub-network of the student
    (e.g. a momentum encoder).

    Schedule: update ``k`` at iteration ``i`` (every ``interval``) uses
    momentum ``ema_momentum(momentum, i - start_iter, ramp)``. Before
    ``start_iter`` the teacher copies the student, buffers included. At
    iteration 0 of a fresh run (not after ``--resume``) the teacher is set
    to the student, buffers included.

    Under DDP the students are identical on every rank, and so are the EMA
    parameters. Buffers (BN statistics, which DDP does not synchronise) are
    broadcast from rank 0 after each update (and, with ``buffers='keep'``,
    once more after training). BoxTeacher's public code (``ema_hook.py``)
    averages the parameters only and lets a train-mode teacher keep its own
    BN statistics (``buffers='keep'``), without synchronising them across
    GPUs; here they are rank 0's. ``check_sync_interval > 0``
    all-gathers a fingerprint of the teacher every that many updates and
    raises if two ranks differ.

    Why not mmdet's ``MeanTeacherHook``: its ``momentum`` is the *student*
    weight (0.001) where the papers' is the teacher's (0.999), it has no
    ramp, start iteration or copy policy for buffers, it updates only after
    the optimizer step, and it pairs tensors with ``zip`` (silently wrong
    when the teacher is a subset of the student). Subclassing it would
    override every method and invert the meaning of its argument, so this
    hook stands alone.

    Args:
        momentum (float): Teacher weight m. Defaults to 0.999.
        ramp (bool): Use ``min(m, 1 - 1/(t+1))``. Defaults to True.
        start_iter (int): First iteration that averages. Defaults to 0.
        interval (int): Update every ``interval`` iterations.
        buffers (str): ``'ema'`` (default), ``'copy'`` (SIM, DiscoBox) or
            ``'keep'`` (BoxTeacher's ``momentum_update`` over
            ``named_parameters`` only).
        update (str): ``'before_step'`` (before the iteration's forward, as
            BoxTeacher's reference) or ``'after_step'`` (after the optimizer
            step, as mmdet). Defaults to ``'before_step'``.
        teacher_name (str): Attribute of the teacher. Defaults to
            ``'teacher'``.
        student_name (str, optional): Attribute of the student.
        check_sync_interval (int): Verify teachers across ranks every this
            many updates (0: never).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 momentum: float = 0.999,
                 ramp: bool = True,
                 start_iter: int = 0,
                 interval: int = 1,
                 buffers: str = 'ema',
                 update: str = 'before_step',
                 teacher_name: str = 'teacher',
                 student_name: Optional[str] = None,
                 check_sync_interval: int = 0) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        if buffers not in BUFFER_POLICIES:
            raise ValueError(f'buffers must be one of {BUFFER_POLICIES}, '
                             f'got {buffers!r}')
        if update not in UPDATE_TIMINGS:
            raise ValueError(f'update must be one of {UPDATE_TIMINGS}, got '
                             f'{update!r}')
        if interval < 1 or start_iter < 0 or check_sync_interval < 0:
            raise ValueError('interval must be >= 1, start_iter and '
                             'check_sync_interval >= 0')
        self.momentum = momentum
        self.ramp = ramp
        self.start_iter = start_iter
        self.interval = interval
        self.buffers = buffers
        self.update_timing = update
        self.teacher_name = teacher_name
        self.student_name = student_name
        self.check_sync_interval = check_sync_interval
        self._pairs: Optional[list] = None
        self._num_updates = 0

    # -- model access -----------------------------------------------------
    def _unwrap(self, model: nn.Module) -> nn.Module:
        return model.module if is_model_wrapper(model) else model

    def pairs(self, model: nn.Module) -> list:
        """Name-matched teacher/student tensors of ``model`` (cached)."""
        model = self._unwrap(model)
        if self._pairs is None:
            if not hasattr(model, self.teacher_name):
                raise AttributeError(
                    f'EMATeacherHook: {type(model).__name__} has no '
                    f'`{self.teacher_name}` submodule; use it with a '
                    'teacher-student model (BoxTeacher, SIM, DiscoBox)')
            teacher = getattr(model, self.teacher_name)
            student = model if self.student_name is None else getattr(
                model, self.student_name)
            if any(p.requires_grad for p in teacher.parameters()):
                raise ValueError(
                    'EMATeacherHook: the teacher has trainable parameters; '
                    'freeze it with mmboxseg.models.utils.freeze_as_buffers')
            self._pairs = paired_tensors(teacher, student)
        return self._pairs

    def update(self,
               model: nn.Module,
               momentum: float,
               buffers: Optional[str] = None) -> None:
        """One EMA update with ``momentum``; counts it in the model's
        ``ema_updates`` buffer when there is one."""
        ema_update_(
            self.pairs(model), momentum,
            self.buffers if buffers is None else buffers)
        if get_world_size() > 1:
            for _, tensor, _, from_param in self.pairs(model):
                if not from_param:
                    broadcast(tensor, src=0)
        unwrapped = self._unwrap(model)
        if isinstance(getattr(unwrapped, 'ema_updates', None), Tensor):
            unwrapped.ema_updates += 1
        self._num_updates += 1
        if self.check_sync_interval and \
                self._num_updates % self.check_sync_interval == 0:
            self.check_sync(model)

    def fingerprint(self, model: nn.Module) -> Tensor:
        """``[2 * T]`` float64 sums and sums of squares of the teacher's
        tensors."""
        values = []
        for _, tensor, _, _ in self.pairs(model):
            t = tensor.detach().double()
            values += [t.sum(), (t * t).sum()]
        return torch.stack(values)

    def check_sync(self, model: nn.Module) -> float:
        """Largest fingerprint difference between ranks; raises when the
        teachers differ."""
        if get_world_size() == 1:
            return 0.0
        prints = all_gather(self.fingerprint(model))
        diff = max(float((p - prints[0]).abs().max()) for p in prints)
        if diff != 0.0:
            raise RuntimeError(
                'EMATeacherHook: teachers differ across ranks (largest '
                f'fingerprint difference {diff:.3e})')
        return diff

    # -- schedule ---------------------------------------------------------
    def momentum_at(self, iteration: int) -> float:
        """Momentum used at ``iteration`` (0 before ``start_iter``)."""
        if iteration < self.start_iter:
            return 0.0
        return ema_momentum(self.momentum, iteration - self.start_iter,
                            self.ramp)

    def _step(self, runner) -> None:
        if (runner.iter + 1) % self.interval:
            return
        momentum = self.momentum_at(runner.iter)
        if runner.iter < self.start_iter:
            self.update(runner.model, 0.0, buffers='copy')
        else:
            self.update(runner.model, momentum)
        runner.message_hub.update_scalar('train/ema_momentum', momentum)

    # -- hook points ------------------------------------------------------
    def before_train(self, runner) -> None:
        self._pairs = None
        self.pairs(runner.model)
        if runner.iter == 0:
            self.update(runner.model, 0.0, buffers='copy')
            print_log(
                'EMATeacherHook: teacher initialised from the student '
                f'({len(self._pairs)} tensors, momentum {self.momentum}, '
                f'ramp {self.ramp}, start_iter {self.start_iter}, buffers '
                f"'{self.buffers}', update {self.update_timing})",
                logger='current')

    def after_train(self, runner) -> None:
        world_size = get_world_size()
        if world_size > 1:
            if self.buffers == 'keep':
                # a train-mode teacher moved its own BN statistics on each
                # rank's batches since the last update's broadcast
                for _, tensor, _, from_param in self.pairs(runner.model):
                    if not from_param:
                        broadcast(tensor, src=0)
            self.check_sync(runner.model)
            print_log(
                f'EMATeacherHook: teachers identical on {world_size} ranks '
                f'after {self._num_updates} updates',
                logger='current')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self.update_timing == 'before_step':
            self._step(runner)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[Dict[str, Tensor]] = None) -> None:
        if self.update_timing == 'after_step':
            self._step(runner)
