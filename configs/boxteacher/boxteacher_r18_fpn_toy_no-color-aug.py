# The toy run without colour augmentation of the student view. Since the
# 1x recipe dropped the strong augmentation (see
# boxteacher_r50_fpn_ms-90k_coco.py) this equals boxteacher_r18_fpn_toy.py;
# kept because the benchmark notes cite it. The toy run WITH the strong
# augmentation is boxteacher_r18_fpn_toy_strong-aug.py.
_base_ = './boxteacher_r18_fpn_toy.py'

train_pipeline = _base_.train_pipeline[:-1] + [
    dict(_base_.train_pipeline[-1], student=[dict(type='PackDetInputs')])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
