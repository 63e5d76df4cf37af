# Copyright (c) mmboxseg contributors. All rights reserved.
from mmdet.models.detectors import BoxInst
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from .ema_teacher_mixin import EMATeacherMixin


class EMATeacherBoxInst(EMATeacherMixin, BoxInst):
    """A BoxInst student with a momentum (EMA) copy of itself, a BoxInst
    teacher (:class:`EMATeacherMixin`): the common part of BoxTeacher and
    SIM.

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
        teacher = self.teacher_like(
            BoxInst,
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            mask_head=mask_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg)
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            mask_head=mask_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.setup_teacher(teacher, inference_with)
