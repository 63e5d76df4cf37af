# Copyright (c) mmboxseg contributors. All rights reserved.
"""EMATeacherHook: the EMA maths, schedule, buffer policies, frozen
teacher and the cross-rank check."""
import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub

from mmboxseg.engine.hooks import EMATeacherHook, ema_momentum
from mmboxseg.engine.hooks import ema_teacher_hook as hook_module
from mmboxseg.engine.hooks import ema_update_, paired_tensors
from mmboxseg.models.utils import freeze_as_buffers


class Student(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.register_buffer('ema_updates', torch.zeros((), dtype=torch.long))

    def attach_teacher(self):
        teacher = copy.deepcopy(self)
        del teacher.ema_updates
        self.teacher = freeze_as_buffers(teacher)
        return self


def make_model():
    torch.manual_seed(0)
    return Student().attach_teacher()


def perturb(model):
    with torch.no_grad():
        model.conv.weight.add_(1.0)
        model.bn.weight.mul_(3.0)
        model.bn.running_mean.add_(2.0)
        model.bn.num_batches_tracked.fill_(7)


def fake_runner(model, iteration=0):
    return SimpleNamespace(
        model=model,
        iter=iteration,
        message_hub=MessageHub.get_instance('test_ema_teacher_hook'))


def test_ramp_values():
    assert ema_momentum(0.999, 0) == 0.0
    assert ema_momentum(0.999, 1) == 0.5
    assert ema_momentum(0.999, 9) == pytest.approx(0.9)
    assert ema_momentum(0.999, 499) == pytest.approx(0.998)
    assert ema_momentum(0.999, 5000) == 0.999
    assert ema_momentum(0.999, 0, ramp=False) == 0.999
    with pytest.raises(ValueError):
        ema_momentum(0.9, -1)


def test_start_iter_schedule():
    hook = EMATeacherHook(momentum=0.9, start_iter=10)
    assert [hook.momentum_at(i) for i in (0, 9, 10, 11, 13)] == \
        [0.0, 0.0, 0.0, 0.5, 0.75]
    hook = EMATeacherHook(momentum=0.9, start_iter=10, ramp=False)
    assert hook.momentum_at(9) == 0.0 and hook.momentum_at(10) == 0.9


def test_teacher_is_frozen_and_outside_the_parameters():
    model = make_model()
    assert list(model.teacher.parameters()) == []
    names = {n for n, _ in model.named_parameters()}
    assert names == {'conv.weight', 'bn.weight', 'bn.bias'}
    state = model.state_dict()
    assert {
        'teacher.conv.weight', 'teacher.bn.weight', 'teacher.bn.running_mean'
    } <= set(state)
    # an optimizer built from the model never holds the teacher
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    held = {id(p) for g in optim.param_groups for p in g['params']}
    assert not held & {id(t) for t in model.teacher.buffers()}
    x = torch.randn(2, 2, 4, 4)
    (model.conv(x).sum() + model.teacher.conv(x).sum()).backward()
    optim.step()
    assert model.conv.weight.grad is not None
    assert not model.teacher.conv.weight.requires_grad
    assert model.teacher.conv.weight.grad is None


def test_ema_update_maths_and_buffer_policies():
    for policy in ('ema', 'copy', 'keep'):
        model = make_model()
        perturb(model)
        before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
        student = {k: v.clone() for k, v in model.state_dict().items()}
        ema_update_(paired_tensors(model.teacher, model), 0.75, policy)
        after = model.teacher.state_dict()
        for key in ('conv.weight', 'bn.weight', 'bn.bias'):
            torch.testing.assert_close(
                after[key], 0.75 * before[key] + 0.25 * student[key])
        mean = after['bn.running_mean']
        count = after['bn.num_batches_tracked']
        if policy == 'ema':
            torch.testing.assert_close(
                mean, 0.75 * before['bn.running_mean'] +
                0.25 * student['bn.running_mean'])
            assert int(count) == 7  # integers are copied
        elif policy == 'copy':
            torch.testing.assert_close(mean, student['bn.running_mean'])
            assert int(count) == 7
        else:
            torch.testing.assert_close(mean, before['bn.running_mean'])
            assert int(count) == 0


def test_copy_repairs_a_broken_teacher():
    model = make_model()
    with torch.no_grad():
        model.teacher.conv.weight.fill_(float('nan'))
    ema_update_(paired_tensors(model.teacher, model), 0.0, 'ema')
    torch.testing.assert_close(model.teacher.conv.weight, model.conv.weight)


def test_pairing_is_by_name_and_checked():
    model = make_model()
    pairs = paired_tensors(model.teacher, model)
    assert all(t is not s for _, t, s, _ in pairs)
    assert {n for n, *_ in pairs} == set(model.teacher.state_dict())
    model.teacher.register_buffer('extra', torch.zeros(1))
    with pytest.raises(KeyError, match='extra'):
        paired_tensors(model.teacher, model)
    trainable = Student()
    trainable.teacher = copy.deepcopy(Student())
    with pytest.raises(ValueError, match='freeze'):
        EMATeacherHook().pairs(trainable)
    with pytest.raises(AttributeError, match='teacher'):
        EMATeacherHook().pairs(Student())


def test_hook_copies_at_start_then_averages_before_each_step():
    model = make_model()
    perturb(model)
    hook = EMATeacherHook(momentum=0.9, update='before_step')
    hook.before_train(fake_runner(model, 0))
    for key, value in model.teacher.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[key])
    assert int(model.ema_updates) == 1
    teacher0 = model.teacher.conv.weight.clone()
    with torch.no_grad():
        model.conv.weight.add_(1.0)
    # iteration 1: m = min(0.9, 1 - 1/2) = 0.5
    hook.after_train_iter(fake_runner(model, 1), 0)
    torch.testing.assert_close(model.teacher.conv.weight, teacher0)
    hook.before_train_iter(fake_runner(model, 1), 0)
    torch.testing.assert_close(model.teacher.conv.weight,
                               0.5 * teacher0 + 0.5 * model.conv.weight)
    assert int(model.ema_updates) == 2


def test_hook_after_step_and_resume_do_not_recopy():
    model = make_model()
    hook = EMATeacherHook(momentum=0.9, ramp=False, update='after_step')
    perturb(model)
    teacher0 = model.teacher.conv.weight.clone()
    # resumed at iteration 5: the teacher from the checkpoint is kept
    hook.before_train(fake_runner(model, 5))
    torch.testing.assert_close(model.teacher.conv.weight, teacher0)
    hook.before_train_iter(fake_runner(model, 5), 0)
    torch.testing.assert_close(model.teacher.conv.weight, teacher0)
    hook.after_train_iter(fake_runner(model, 5), 0)
    torch.testing.assert_close(model.teacher.conv.weight,
                               0.9 * teacher0 + 0.1 * model.conv.weight)


def test_interval():
    model = make_model()
    perturb(model)
    hook = EMATeacherHook(momentum=0.5, ramp=False, interval=2)
    hook.pairs(model)
    hook.before_train_iter(fake_runner(model, 0), 0)
    assert int(model.ema_updates) == 0
    hook.before_train_iter(fake_runner(model, 1), 0)
    assert int(model.ema_updates) == 1


def test_bad_arguments():
    for kwargs in (dict(momentum=1.0), dict(buffers='avg'),
                   dict(update='later'), dict(interval=0)):
        with pytest.raises(ValueError):
            EMATeacherHook(**kwargs)


def test_check_sync_detects_diverged_ranks(monkeypatch):
    model = make_model()
    hook = EMATeacherHook()
    monkeypatch.setattr(hook_module, 'get_world_size', lambda: 2)
    same = hook.fingerprint(model)
    monkeypatch.setattr(hook_module, 'all_gather', lambda t: [t, t.clone()])
    assert hook.check_sync(model) == 0.0
    monkeypatch.setattr(hook_module, 'all_gather',
                        lambda t: [t, t + same.new_tensor(1e-3)])
    with pytest.raises(RuntimeError, match='differ across ranks'):
        hook.check_sync(model)
