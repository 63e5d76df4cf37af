# Copyright (c) mmboxseg contributors. All rights reserved.
import copy

import torch
from mmdet.models.detectors import BoxInst
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from mmboxseg.models.utils import freeze_as_buffers

INFERENCE_MODELS = ('teacher', 'student')


class EMATeacherBoxInst(BoxInst):
    """A BoxInst student with a momentum (EMA) copy of itself: the common
    part of BoxTeacher and SIM.

    ``self.teacher`` is a BoxInst of the same architecture whose tensors are
    buffers (:func:`freeze_as_buffers`): it is in every checkpoint and
    restored on ``--resume``, the optimizer never sees it, and only
    :class:`mmboxseg.engine.hooks.EMATeacherHook` writes it. It always runs
    in eval mode: mmdet's FCOS head scales box predictions by the stride
    only when not training, and eval-mode BN uses the (EMA) running
    statistics.

    Args:
        inference_with (str): ``'teacher'`` or ``'student'``: which network
            :meth:`predict` runs.
        Other args: as mmdet's ``BoxInst``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 mask_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 inference_with: str = 'teacher') -> None:
        teacher = BoxInst(
            backbone=copy.deepcopy(backbone),
            neck=copy.deepcopy(neck),
            bbox_head=copy.deepcopy(bbox_head),
            mask_head=copy.deepcopy(mask_head),
            train_cfg=copy.deepcopy(train_cfg),
            test_cfg=copy.deepcopy(test_cfg))
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            mask_head=mask_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if inference_with not in INFERENCE_MODELS:
            raise ValueError(f'inference_with must be one of '
                             f'{INFERENCE_MODELS}, got {inference_with!r}')
        self.inference_with = inference_with
        self.teacher = freeze_as_buffers(teacher)
        self.teacher.eval()
        self.register_buffer('ema_updates', torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> 'EMATeacherBoxInst':
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

    # -- inference ----------------------------------------------------------
    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """CondInst inference with the teacher or the student."""
        if self.inference_with == 'teacher':
            return self.teacher.predict(batch_inputs, batch_data_samples,
                                        rescale)
        return super().predict(batch_inputs, batch_data_samples, rescale)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        if self.inference_with == 'teacher':
            return self.teacher._forward(batch_inputs, batch_data_samples)
        return super()._forward(batch_inputs, batch_data_samples)
