# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import Tuple

import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures.bbox import get_box_tensor

from mmboxseg.registry import MODELS
from .box_supervision_data_preprocessor import BoxSupDataPreprocessor


@MODELS.register_module()
class TwoViewBoxSupDataPreprocessor(BoxSupDataPreprocessor):
    """Box-supervision preprocessor for teacher/student training.

    The train pipeline ends in mmdet's ``MultiBranch`` with the branches
    ``views`` (default ``('teacher', 'student')``) after all geometric
    transforms, so both views share geometry and differ only in colour.
    Each view is normalised and padded as by :class:`DetDataPreprocessor`;
    box masks, colour similarity and the valid-pixel mask are computed once,
    from the *teacher* view's raw image (BoxTeacher: "the teacher and the
    colour similarity see the un-augmented image"), and attached to the
    samples of both views.

    Returns ``inputs`` and ``data_samples`` as dicts keyed by view, as mmdet's
    ``MultiBranchDataPreprocessor``. Batches that are not dicts (evaluation,
    or a single-view pipeline) are handled as by
    :class:`BoxSupDataPreprocessor`; the detector then uses the same image
    for teacher and student.

    Args:
        views (tuple[str, str]): Names of the teacher and student branches.
        **kwargs: :class:`BoxSupDataPreprocessor` arguments.
    """

    def __init__(self,
                 *args,
                 views: Tuple[str, str] = ('teacher', 'student'),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if len(views) != 2 or views[0] == views[1]:
            raise ValueError(f'views must be two distinct branch names, got '
                             f'{views}')
        self.views = tuple(views)

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if not isinstance(inputs, dict):
            return super().forward(data, training)
        samples = data.get('data_samples') or {}
        if set(inputs) != set(self.views) or set(samples) != set(self.views):
            raise KeyError(
                f'TwoViewBoxSupDataPreprocessor expects the branches '
                f'{self.views} from MultiBranch, got inputs {sorted(inputs)} '
                f'and data_samples {sorted(samples)}')
        teacher_view, student_view = self.views
        if training:
            for view in self.views:
                self.drop_gt_masks(samples[view])
        out = {
            view:
            DetDataPreprocessor.forward(
                self, dict(inputs=inputs[view], data_samples=samples[view]),
                training)
            for view in self.views
        }
        teacher, student = out[teacher_view], out[student_view]
        if teacher['inputs'].shape != student['inputs'].shape:
            raise ValueError(
                'teacher and student views differ in shape '
                f"({tuple(teacher['inputs'].shape)} vs "
                f"{tuple(student['inputs'].shape)}): geometric transforms "
                'must come before MultiBranch')
        for t_sample, s_sample in zip(teacher['data_samples'],
                                      student['data_samples']):
            t_boxes = get_box_tensor(t_sample.gt_instances.bboxes)
            s_boxes = get_box_tensor(s_sample.gt_instances.bboxes)
            if t_boxes.shape != s_boxes.shape or not torch.equal(
                    t_boxes, s_boxes):
                name = t_sample.get('img_path')
                raise ValueError(
                    f'teacher and student boxes differ for {name}: '
                    'geometric transforms must come before MultiBranch')
        if training:
            self.add_box_supervision(inputs[teacher_view], teacher['inputs'],
                                     teacher['data_samples'])
            for t_sample, s_sample in zip(teacher['data_samples'],
                                          student['data_samples']):
                s_sample.gt_instances.box_masks = \
                    t_sample.gt_instances.box_masks
                s_sample.color_similarity = t_sample.color_similarity
                s_sample.image_valid = t_sample.image_valid
        return dict(
            inputs={view: out[view]['inputs']
                    for view in self.views},
            data_samples={
                view: out[view]['data_samples']
                for view in self.views
            })
