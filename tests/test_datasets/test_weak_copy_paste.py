# Copyright (c) mmboxseg contributors. All rights reserved.
"""Weakly-supervised copy-paste geometry, importance sampling and the
memory bank (FIFO order, bound, checkpoint round trip)."""
import io

import pytest
import torch

from mmboxseg.datasets.transforms import WeakCopyPaste, masks_to_boxes
from mmboxseg.models.utils import MemoryBank


def cell_mask(h4, w4, y0, y1, x0, x1):
    """A uint8 stride-4 probability map, 255 on cells [y0, y1) x [x0, x1).
    Up-sampled x4 it is 1 well inside [4 y0, 4 y1) x [4 x0, 4 x1) (corners
    are rounded off), so a box one cell inside cuts an exact rectangle."""
    m = torch.zeros(h4, w4, dtype=torch.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def bank_with(image, boxes, labels, masks, scores, length=1):
    bank = MemoryBank(length=length, seed=0)
    bank.push(image, torch.tensor(boxes, dtype=torch.float32),
              torch.tensor(labels), torch.stack(masks), torch.tensor(scores))
    return bank


def paster(bank, **kw):
    cp = WeakCopyPaste(prob=1.0, mask_thr=0.5, **kw)
    cp.memory_bank = bank
    return cp


def target(boxes, h=64, w=64, value=10):
    return dict(
        img=torch.full((3, h, w), value, dtype=torch.uint8),
        gt_bboxes=torch.tensor(boxes, dtype=torch.float32),
        gt_bboxes_labels=torch.arange(len(boxes)))


def test_paste_covers_pixels_and_removes_the_fully_occluded():
    src = torch.full((3, 64, 64), 200, dtype=torch.uint8)
    # pasted object: pixels [8, 32) x [8, 32), its box (rows/columns
    # int(x1)..int(x2), AdelaiDet's box-mask rule) cuts the mask
    bank = bank_with(src, [[8, 8, 31, 31]], [3],
                     [cell_mask(16, 16, 1, 10, 1, 10)], [0.9])
    # box 0 lies inside the pasted object; box 1 is far from it
    out = paster(bank)(target([[12, 12, 20, 20], [40, 40, 60, 60]]))
    assert out['gt_pasted'].tolist() == [False, True]
    assert out['gt_bboxes_labels'].tolist() == [1, 3]
    torch.testing.assert_close(
        out['gt_bboxes'],
        torch.tensor([[40., 40., 60., 60.], [8., 8., 31., 31.]]))
    img = out['img']
    assert (img[:, 8:32, 8:32] == 200).all()
    covered = torch.zeros(64, 64, dtype=torch.bool)
    covered[8:32, 8:32] = True
    assert (img[:, ~covered] == 10).all()
    vis = out['gt_visible_masks']
    assert vis.shape == (2, 64, 64) and torch.equal(vis[1], covered)


def test_partial_occlusion_rederives_boxes():
    src = torch.zeros((3, 64, 64), dtype=torch.uint8)
    # paste covers columns [0, 16) of all rows [0, 64)
    bank = bank_with(src, [[0, 0, 15, 63]], [0],
                     [cell_mask(16, 16, 0, 16, 0, 6)], [1.0])
    out = paster(bank)(
        target([[8.5, 10.2, 30.7, 40.1], [20, 4, 40, 8], [4, 50, 40, 60]]))
    boxes = out['gt_bboxes']
    # box 0 loses its left strip: x1 becomes the first visible column (16)
    torch.testing.assert_close(boxes[0], torch.tensor([16.0, 10.2, 30.7,
                                                       40.1]))
    # box 1 is untouched: exactly the same box
    torch.testing.assert_close(boxes[1], torch.tensor([20.0, 4.0, 40.0, 8.0]))
    # box 2 loses its left part too
    torch.testing.assert_close(boxes[2], torch.tensor([16.0, 50.0, 40.0,
                                                       60.0]))
    vis = out['gt_visible_masks']
    assert not vis[0][:, :16].any() and vis[0][20, 16]
    # visible masks lie inside the (new) boxes
    tight = masks_to_boxes(vis)
    assert (tight[:, :2] >= boxes[:, :2].floor()).all()
    assert (tight[:, 2:] <= boxes[:, 2:].floor() + 1).all()


def test_corner_occlusion_keeps_the_box():
    src = torch.zeros((3, 64, 64), dtype=torch.uint8)
    bank = bank_with(src, [[0, 0, 15, 15]], [0],
                     [cell_mask(16, 16, 0, 6, 0, 6)], [1.0])
    out = paster(bank)(target([[8, 8, 40, 40]]))
    torch.testing.assert_close(out['gt_bboxes'][0],
                               torch.tensor([8., 8., 40., 40.]))
    assert out['gt_pasted'].tolist() == [False, True]


def test_nothing_is_pasted_outside_the_image():
    # a larger source image: one object crosses the target's border, one
    # lies entirely outside it
    src = torch.full((3, 100, 100), 50, dtype=torch.uint8)
    masks = [
        cell_mask(25, 25, 11, 21, 11, 21),
        cell_mask(25, 25, 19, 25, 19, 25)
    ]
    bank = bank_with(src, [[48, 48, 79, 79], [80, 80, 99, 99]], [1, 2], masks,
                     [1.0, 1.0])
    out = paster(bank, min_select=2)(target([[0, 0, 8, 8]], h=64, w=60))
    assert out['img'].shape == (3, 64, 60)
    assert out['gt_pasted'].tolist() == [False, True]
    assert out['gt_bboxes_labels'].tolist() == [0, 1]
    torch.testing.assert_close(out['gt_bboxes'][1],
                               torch.tensor([48., 48., 60., 64.]))
    assert out['gt_visible_masks'].shape == (2, 64, 60)
    # nothing from the second object and no pixel past the image
    assert (out['img'][:, 48:, 48:] == 50).all()
    assert (out['img'][:, :48] == 10).all()


def test_later_pastes_occlude_earlier_ones():
    src = torch.zeros((3, 64, 64), dtype=torch.uint8)
    masks = [cell_mask(16, 16, 1, 11, 1, 11), cell_mask(16, 16, 1, 11, 5, 15)]
    bank = bank_with(src, [[8, 8, 39, 39], [24, 8, 55, 39]], [0, 1], masks,
                     [1.0, 1.0])
    out = paster(
        bank, min_select=2, replacement=False, occlude_pastes=True)(
            target([[0, 0, 4, 4]]))
    pasted = out['gt_pasted']
    assert pasted.sum() == 2
    vis = out['gt_visible_masks'][pasted]
    boxes = out['gt_bboxes'][pasted]
    # pasted instances come in drawing order; the first drawn lost the
    # overlap (columns [24, 40)) to the second, whichever they are
    first, second = 0, 1
    assert not (vis[first] & vis[second]).any()
    assert vis[second].sum() == 32 * 32
    assert vis[first].sum() == 32 * 32 - 16 * 32
    # the occluded one's box shrank to its visible half (16 columns, 15
    # when cut by its own box's x2 = int(x2) rule)
    assert boxes[first, 2] - boxes[first, 0] in (15, 16)
    assert boxes[second, 2] - boxes[second, 0] == 31


def test_pasted_masks_stay_whole_by_default():
    """copypaste.py masks_copy_paste: only the image's own masks lose the
    pasted pixels; the pasted masks are appended whole (they may overlap)."""
    src = torch.zeros((3, 64, 64), dtype=torch.uint8)
    masks = [cell_mask(16, 16, 1, 11, 1, 11), cell_mask(16, 16, 1, 11, 5, 15)]
    bank = bank_with(src, [[8, 8, 39, 39], [24, 8, 55, 39]], [0, 1], masks,
                     [1.0, 1.0])
    cp = paster(bank, min_select=2, max_select=2, replacement=False)
    assert cp.occlude_pastes is False
    out = cp(target([[0, 0, 4, 4]]))
    vis = out['gt_visible_masks'][out['gt_pasted']]
    assert vis.flatten(1).sum(dim=1).tolist() == [32 * 32, 32 * 32]
    assert (vis[0] & vis[1]).sum() == 16 * 32


def test_release_sampling_with_replacement():
    """copypaste.py: random.choices(range(K), weights=score**3, k=n) with
    n = clamp(int(0.5 K), 1, 3): with replacement, not capped by the
    number of non-zero weights."""
    cp = WeakCopyPaste()
    assert cp.replacement is True
    gen = torch.Generator().manual_seed(0)
    scores = torch.tensor([0.9, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert cp.select(scores, gen).tolist() == [0, 0, 0]
    # all weights zero (the code's random.choices raises): nothing
    assert cp.select(torch.zeros(4), gen).numel() == 0
    # over many draws the picks follow score ** 3
    scores = torch.tensor([0.5, 1.0])
    picks = torch.cat([cp.select(scores, gen) for _ in range(3000)])
    assert len(picks) == 3000
    share = (picks == 0).float().mean()
    assert abs(float(share) - 0.125 / 1.125) < 0.02


def test_importance_sampling_counts_and_weights():
    cp = WeakCopyPaste(replacement=False)
    gen = torch.Generator().manual_seed(0)
    scores = torch.tensor([0.9, 0.0, 0.0, 0.0])
    for _ in range(20):
        assert cp.select(scores, gen).tolist() == [0]
    # K = 8, ratio 0.5 -> 4, clipped to max_select = 3, no repeats
    picks = cp.select(torch.rand(8, generator=gen) + 0.1, gen)
    assert len(picks) == 3 and len(set(picks.tolist())) == 3
    # K = 1 -> at least min_select = 1
    assert len(cp.select(torch.tensor([0.5]), gen)) == 1
    # higher scores are drawn more often (score ** 3: 0.9 vs 0.3 is 27x)
    counts = torch.zeros(2)
    for _ in range(300):
        counts[cp.select(torch.tensor([0.9, 0.3]), gen)] += 1
    assert counts[0] > 10 * counts[1]


def test_bank_gating_and_missing_bank():
    src = torch.zeros((3, 64, 64), dtype=torch.uint8)
    bank = bank_with(
        src, [[0, 0, 16, 16]], [0], [cell_mask(16, 16, 0, 4, 0, 4)], [1.0],
        length=2)
    cp = paster(bank)
    out = cp(target([[8, 8, 40, 40]]))  # bank not full yet: unchanged
    assert out['gt_pasted'].tolist() == [False]
    assert 'gt_visible_masks' not in out
    cp.min_bank_size = 1
    assert cp(target([[8, 8, 40, 40]]))['gt_pasted'].tolist() == [False, True]
    cp.memory_bank = None
    with pytest.raises(RuntimeError, match='MemoryBankHook'):
        cp(target([[8, 8, 40, 40]]))


def push_n(bank, n, num_inst=2, hw=(32, 32)):
    for i in range(n):
        bank.push(
            torch.full((3, ) + hw, i, dtype=torch.uint8),
            torch.tensor([[0., 0., 8., 8.]] * num_inst),
            torch.arange(num_inst),
            torch.rand(num_inst, hw[0] // 4 + 3, hw[1] // 4 + 3),
            torch.arange(num_inst).float() / num_inst)


def test_bank_fifo_order_bound_and_instance_cap():
    bank = MemoryBank(length=3, max_instances=2)
    push_n(bank, 5, num_inst=4)
    assert len(bank) == 3 and bank.is_full and bank.num_pushed == 5
    assert [int(e['image'][0, 0, 0]) for e in bank.entries] == [2, 3, 4]
    entry = bank.entries[-1]
    # the two best-scored instances are kept; masks cropped to the image
    assert sorted(entry['scores'].tolist()) == [0.5, 0.75]
    assert entry['mask_probs'].shape == (2, 8, 8)
    assert entry['mask_probs'].dtype == torch.uint8
    assert bank.nbytes() <= bank.bound_bytes((32, 32))
    assert bank.bound_bytes((32, 32)) == 3 * (3 * 32 * 32 + 2 * (64 + 28))


def test_bank_rejects_bad_pushes():
    bank = MemoryBank(length=2)
    with pytest.raises(TypeError, match='uint8'):
        bank.push(
            torch.zeros(3, 8, 8), torch.zeros(0, 4), torch.zeros(0),
            torch.zeros(0, 2, 2), torch.zeros(0))
    with pytest.raises(ValueError, match='do not cover'):
        bank.push(
            torch.zeros(3, 16, 16, dtype=torch.uint8), torch.zeros(1, 4),
            torch.zeros(1), torch.zeros(1, 2, 2), torch.zeros(1))


def test_bank_state_round_trip_with_weights_only():
    bank = MemoryBank(length=3, seed=5)
    push_n(bank, 4)
    bank.sample()
    buf = io.BytesIO()
    torch.save(dict(memory_bank=bank.state_dict()), buf)
    buf.seek(0)
    state = torch.load(buf)  # weights_only=True by default
    other = MemoryBank(length=3, seed=99)
    other.load_state_dict(state['memory_bank'])
    assert other.num_pushed == 4 and len(other) == 3
    for a, b in zip(bank.entries, other.entries):
        for key in a:
            assert torch.equal(a[key], b[key])
    # the RNG continues where it stopped: the same next draws
    assert [int(bank.sample()['image'][0, 0, 0]) for _ in range(6)] == \
        [int(other.sample()['image'][0, 0, 0]) for _ in range(6)]
    with pytest.raises(KeyError, match='rng_state'):
        other.load_state_dict(dict(entries=[]))


def test_masks_to_boxes_matches_mmdet_mask2bbox():
    from mmdet.structures.mask import mask2bbox
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 20, 30, generator=gen) > 0.97
    masks[0] = False  # an empty mask gives zeros in both
    masks[1, 3:5, 7:12] = True
    torch.testing.assert_close(masks_to_boxes(masks), mask2bbox(masks))
