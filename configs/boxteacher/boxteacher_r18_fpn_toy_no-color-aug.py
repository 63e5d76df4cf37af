# Ablation of the toy run: the student sees the teacher's colours (no colour
# jitter or grayscale), to measure what the strong augmentation costs or
# gives on the short toy schedule (paper Table 8: at 1x it costs 0.4 mask
# AP and 0.6 box AP on COCO; it pays off at 3x).
_base_ = './boxteacher_r18_fpn_toy.py'

train_pipeline = _base_.train_pipeline[:-1] + [
    dict(_base_.train_pipeline[-1], student=[dict(type='PackDetInputs')])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
