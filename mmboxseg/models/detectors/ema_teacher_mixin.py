# Copyright (c) mmboxseg contributors. All rights reserved.
import copy

import torch
import torch.nn as nn
from mmdet.structures import SampleList
from torch import Tensor

from mmboxseg.models.utils import freeze_as_buffers

INFERENCE_MODELS = ('teacher', 'student')


class EMATeacherMixin:
    """A student detector with a momentum (EMA) copy of itself, shared by
    BoxTeacher, SIM (CondInst students) and DiscoBox (SOLOv2 student).

    Put it before the mmdet detector class in the bases and call
    :meth:`setup_teacher` at the end of ``__init__``. ``self.teacher`` is
    a detector of the same architecture whose tensors are buffers
    (:func:`freeze_as_buffers`): it is in every checkpoint and restored on
    ``--resume``, the optimizer never sees it, and only
    :class:`mmboxseg.engine.hooks.EMATeacherHook` writes it. It is kept in
    eval mode (eval-mode BN uses the running statistics; mmdet's FCOS head
    scales boxes by the stride only in eval mode); a subclass may switch it
    for its own training-time teacher forward and back (BoxTeacher's
    ``teacher_mode='train'``, the public code's BN with batch statistics).
    ``ema_updates`` counts the hook's updates.
    """

    @staticmethod
    def teacher_like(detector_cls: type, **configs) -> nn.Module:
        """A detector of ``detector_cls`` built from deep copies of the
        student's ``configs`` (the student's builders may modify them)."""
        return detector_cls(**copy.deepcopy(configs))

    def setup_teacher(self, teacher: nn.Module, inference_with: str) -> None:
        if inference_with not in INFERENCE_MODELS:
            raise ValueError(f'inference_with must be one of '
                             f'{INFERENCE_MODELS}, got {inference_with!r}')
        self.inference_with = inference_with
        self.teacher = freeze_as_buffers(teacher)
        self.teacher.eval()
        self.register_buffer('ema_updates', torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def check_teacher_initialised(self) -> None:
        """Raise when no :class:`EMATeacherHook` ever wrote the teacher
        (a forgotten hook would otherwise train on a random teacher)."""
        if int(self.ema_updates) == 0:
            raise RuntimeError(
                f'{type(self).__name__}: the teacher was never set from the '
                "student; add dict(type='EMATeacherHook') to custom_hooks")

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Inference with the teacher or the student."""
        if self.inference_with == 'teacher':
            return self.teacher.predict(batch_inputs, batch_data_samples,
                                        rescale)
        return super().predict(batch_inputs, batch_data_samples, rescale)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        if self.inference_with == 'teacher':
            return self.teacher._forward(batch_inputs, batch_data_samples)
        return super()._forward(batch_inputs, batch_data_samples)
