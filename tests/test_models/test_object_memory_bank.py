# Copyright (c) mmboxseg contributors. All rights reserved.
"""DiscoBox's per-class object bank: push rule, FIFO per class, each
retrieval rule, first vs random retrieval, checkpoint round trip."""
import pytest
import torch

from mmboxseg.models.utils import ObjectMemoryBank, relu_l2_normalise

C, S, M = 4, 2, 10


def obj(feat_seed=0, fill=(0, 5), box=(0, 0, 40, 40)):
    """One object: normalised features (channel ``feat_seed % C`` plus a
    little seeded noise), a mask whose columns ``fill`` are foreground, a
    box."""
    g = torch.Generator().manual_seed(feat_seed)
    feat = 0.05 * torch.rand(1, C, S, S, generator=g)
    feat[:, feat_seed % C] += 1.0
    feat = relu_l2_normalise(feat)[0]
    mask = torch.zeros(M, M)
    mask[:, fill[0]:fill[1]] = 1.0
    return feat, mask, torch.tensor(box, dtype=torch.float32)


def push(bank, label, *objects):
    feats, masks, boxes = zip(*objects)
    return bank.push(
        torch.full((len(objects), ), label), torch.stack(feats),
        torch.stack(masks), torch.stack(boxes))


def loose_bank(**kw):
    args = dict(
        num_classes=3,
        length=3,
        min_size=31,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.7,
        appear_thresh=0.7,
        ratio_range=(0.9, 1.2),
        max_retrieval=2)
    args.update(kw)
    return ObjectMemoryBank(**args)


def test_push_rule_and_fifo_per_class():
    bank = loose_bank()
    small = obj(box=(0, 0, 40, 31))  # 31 px high, not above 31: not pushed
    assert push(bank, 0, obj(1), small) == 1
    assert bank.class_size(0) == 1 and len(bank) == 1
    for seed in range(2, 6):
        push(bank, 0, obj(seed))
    push(bank, 2, obj(9))
    assert bank.class_size(0) == 3 and bank.class_size(1) == 0
    assert bank.class_size(2) == 1 and len(bank) == 4
    assert bank.num_pushed == 6
    # the oldest left first: seeds 3, 4, 5 remain, in that order
    want = torch.stack([obj(s)[0] for s in (3, 4, 5)]).half()
    assert torch.equal(bank.queues[0]['feats'], want)
    with pytest.raises(ValueError, match='labels'):
        push(bank, 3, obj(0))


def test_each_retrieval_rule_excludes():
    bank = loose_bank(length=10, max_retrieval=10)
    feat, mask, box = obj(0)
    push(
        bank,
        1,
        obj(0),  # 0: same object, passes everything
        obj(0, fill=(0, 3)),  # 1: fg IoU 3/5, bg IoU 5/7
        obj(0, fill=(0, 7)),  # 2: fg IoU 5/7, bg IoU 3/5
        obj(1),  # 3: other features (appearance)
        obj(0, box=(0, 0, 40, 32)),  # 4: aspect ratio 40/40 / (40/32) = 0.8
        obj(0, box=(0, 0, 44, 40)),  # 5: ratio 1 / 1.1 = 0.91: passes
    )
    ok = bank.qualifying(1, mask, feat, box)
    assert ok.tolist() == [True, False, False, False, False, True]
    # the appearance rule alone: lowering its threshold admits object 3
    feats = bank.queues[1]['feats'].float()
    pooled = mask[None, None]
    sim = (feat[None] * feats).sum(1)[3]
    both = torch.nn.functional.adaptive_avg_pool2d(pooled, S)[0, 0]**2
    appear = float((sim * both).sum() / both.sum())
    assert appear < 0.7
    bank.appear_thresh = appear - 1e-3
    assert bank.qualifying(1, mask, feat, box).tolist()[3]
    # nothing in another class
    assert bank.retrieve(0, mask, feat, box) is None


def test_release_iou_and_push_rule():
    """The release's ObjectQueues: fg IoU ``sum(A B) / #(A + B >= 1)``, bg
    IoU ``sum((1-A)(1-B)) / #(2 - A - B >= 1)`` (not the soft ``sum min /
    sum max``), and boxes pushed when both sides exceed 128 px (stride-4
    sides > 32)."""
    bank = ObjectMemoryBank(num_classes=2)
    assert bank.iou == 'release' and bank.min_size == 128
    a = torch.tensor([[1.0, 0.5, 0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0, 0.5, 0.0]])
    # fg: (1 + 0.5) / 2 pixels with A + B >= 1; bg: (0.5 + 1) / 2
    torch.testing.assert_close(bank.mask_iou(a, b), torch.tensor([0.75]))
    torch.testing.assert_close(
        bank.mask_iou(1 - a, 1 - b), torch.tensor([0.75]))
    soft = ObjectMemoryBank(num_classes=2, iou='soft')
    torch.testing.assert_close(soft.mask_iou(a, b), torch.tensor([0.6]))
    # in retrieval: the release's 0.75 passes 0.7, the soft 0.6 does not
    feat, _, box = obj(0, box=(0, 0, 200, 200))
    # the columns of a and b above, then background
    q = torch.zeros(M, M)
    q[:, 0], q[:, 1] = 1.0, 0.5
    k = torch.zeros(M, M)
    k[:, 0], k[:, 1], k[:, 2] = 1.0, 1.0, 0.5
    for b_, want in ((bank, True), (soft, False)):
        b_.push(torch.tensor([1]), feat[None], k[None], box[None])
        assert b_.qualifying(1, q, feat, box).tolist() == [want]
    with pytest.raises(ValueError, match='iou'):
        ObjectMemoryBank(num_classes=2, iou='hard')
    # push rule: sides > 128 px
    bank = ObjectMemoryBank(num_classes=1)
    boxes = torch.tensor([[0, 0, 132, 132], [0, 0, 128, 300],
                          [0, 0, 300, 128.]])
    assert bank.push(
        torch.zeros(3, dtype=torch.long), feat[None].repeat(3, 1, 1, 1),
        k[None].repeat(3, 1, 1), boxes) == 1


def test_first_and_random_retrieval():
    first = loose_bank(length=10, max_retrieval=2)
    push(first, 0, *[obj(0) for _ in range(5)])
    feat, mask, box = obj(0)
    got = first.retrieve(0, mask, feat, box)
    assert got['indices'].tolist() == [0, 1]
    assert got['feats'].shape == (2, C, S, S)
    assert got['masks'].shape == (2, M, M) and got['masks'].max() == 1.0
    rand = loose_bank(length=10, max_retrieval=2, retrieval='random', seed=3)
    push(rand, 0, *[obj(0) for _ in range(5)])
    draws = {
        tuple(rand.retrieve(0, mask, feat, box)['indices'].tolist())
        for _ in range(20)
    }
    assert len(draws) > 1 and all(len(set(d)) == 2 for d in draws)
    with pytest.raises(ValueError, match='retrieval'):
        loose_bank(retrieval='best')


def test_state_dict_round_trip_and_bound():
    bank = loose_bank(retrieval='random')
    push(bank, 0, obj(1), obj(2))
    push(bank, 2, obj(3))
    bank.generator.manual_seed(5)
    state = bank.state_dict()
    other = loose_bank(retrieval='random')
    other.load_state_dict(state)
    assert len(other) == 3 and other.num_pushed == 3
    for label in (0, 2):
        for key in ('feats', 'masks', 'boxes'):
            assert torch.equal(bank.queues[label][key],
                               other.queues[label][key])
    assert torch.equal(
        torch.randperm(9, generator=bank.generator),
        torch.randperm(9, generator=other.generator))
    assert bank.nbytes() == 3 * (2 * C * S * S + M * M + 16)
    assert bank.bound_bytes(C, S, M) == 3 * 3 * (2 * C * S * S + M * M + 16)
    with pytest.raises(KeyError, match='memory_bank lacks'):
        other.load_state_dict(dict(entries=[]))


def test_hook_refuses_a_bank_that_returns_too_few_partners():
    from mmboxseg.engine.hooks import MemoryBankHook

    class Receiver:
        memory_bank = None
        min_bank_size = 5

    class Runner:
        model = Receiver()

    hook = MemoryBankHook(
        bank=dict(type='ObjectMemoryBank', num_classes=2, max_retrieval=4))
    with pytest.raises(ValueError, match='at most 4'):
        hook.before_train(Runner())
    hook = MemoryBankHook(
        bank=dict(type='ObjectMemoryBank', num_classes=2, max_retrieval=5))
    hook.before_train(Runner())
    assert Runner.model.memory_bank is hook.bank
