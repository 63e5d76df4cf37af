# Copyright (c) mmboxseg contributors. All rights reserved.
"""DiscoBox's structured teacher: pairwise kernel by hand, mean-field on
hand-built images."""
import math

import torch

from mmboxseg.models.utils import (contrast_sensitive_kernel, mean_field,
                                   quantise)


def test_kernel_by_hand():
    img = torch.zeros(1, 3, 3, 3)
    img[0, :, 1, 2] = torch.tensor([0.3, 0.0, 0.4])  # |dI|^2 = 0.25
    k = contrast_sensitive_kernel(img, 3, alpha0=2.0, theta0=0.5, theta1=30)
    assert k.shape == (1, 9, 3, 3)
    # centre pixel (1, 1): channel 4 is itself, channel 5 its right
    # neighbour (1, 2), channel 8 the corner (2, 2)
    assert math.isclose(k[0, 4, 1, 1].item(), 2.0, rel_tol=1e-6)
    want = 2 * math.exp(-0.25 / (2 * 0.25) - 1 / (2 * 900))
    assert math.isclose(k[0, 5, 1, 1].item(), want, rel_tol=1e-6)
    assert math.isclose(
        k[0, 8, 1, 1].item(), 2 * math.exp(-2 / 1800), rel_tol=1e-6)
    # neighbours outside the image weigh 0
    assert k[0, 0, 0, 0] == 0 and k[0, 8, 2, 2] == 0
    # and so do padding pixels
    valid = torch.ones(1, 3, 3, dtype=torch.bool)
    valid[0, :, 2] = False
    k2 = contrast_sensitive_kernel(img, 3, valid=valid)
    assert k2[0, 5, 1, 1] == 0 and k2[0, :, :, 2].abs().sum() == 0


def test_quantise():
    p = torch.tensor([0.0, 0.5, 0.51, 1.0])
    assert torch.equal(quantise(p, 0.1), torch.tensor([0.1, 0.1, 0.9, 0.9]))


def two_colour_box():
    """12x12 image: a box over rows 2-9 and columns 2-9 whose left half
    (columns 2-5) is red and right half blue, grey elsewhere; the noisy
    initial prediction is mostly foreground on the red half, mostly
    background on the blue half."""
    img = torch.full((1, 3, 12, 12), 0.0)
    img[0, 0, 2:10, 2:6] = 2.0  # red (normalised units)
    img[0, 2, 2:10, 6:10] = 2.0  # blue
    box = torch.zeros(1, 12, 12, dtype=torch.bool)
    box[0, 2:10, 2:10] = True
    probs = torch.zeros(1, 12, 12)
    probs[0, 2:10, 2:6] = 0.8
    probs[0, 4, 3] = 0.2  # holes in the red half
    probs[0, 7, 4] = 0.1
    probs[0, 3, 8] = 0.9  # spurious foreground in the blue half
    probs[0, 8, 7] = 0.7
    probs[0, 0, 0] = 0.9  # outside the box
    return img, box, probs


def test_two_colour_box_converges_to_the_colour_split():
    img, box, probs = two_colour_box()
    kernels = contrast_sensitive_kernel(img)
    q = mean_field(probs, kernels, box, num_iters=10, base=0.1)
    labels = q > 0.5
    want = torch.zeros_like(labels)
    want[0, 2:10, 2:6] = True
    assert torch.equal(labels, want)
    # the marginals stay quantised
    assert set(q.unique().tolist()) <= {0.1, 0.9} or torch.allclose(
        q.unique(), torch.tensor([0.1, 0.9]))


def test_without_colour_contrast_the_majority_spreads():
    """With one colour everywhere the vote runs across the colour boundary
    and the result is not the colour split: the contrast sensitivity of
    the pairwise term is what keeps it."""
    img, box, probs = two_colour_box()
    flat = torch.zeros_like(img)
    q = mean_field(probs, contrast_sensitive_kernel(flat), box)
    split = torch.zeros_like(box)
    split[0, 2:10, 2:6] = True
    assert not torch.equal(q > 0.5, split)


def test_cross_image_unary_breaks_a_tie():
    """A uniform box initialised at exactly 0.5 stays background; enough
    foreground evidence from retrieved objects turns it foreground."""
    img = torch.zeros(1, 3, 6, 6)
    box = torch.zeros(1, 6, 6, dtype=torch.bool)
    box[0, 1:5, 1:5] = True
    probs = torch.full((1, 6, 6), 0.5)
    kernels = contrast_sensitive_kernel(img)
    assert not (mean_field(probs, kernels, box) > 0.5).any()
    unary = torch.zeros(1, 2, 6, 6)
    unary[:, 1] = 1.0
    q = mean_field(probs, kernels, box, cross_unary=unary, cross_weight=1.0)
    assert torch.equal(q > 0.5, box)


def _release_mean_field(img, x, targets, iiu=None, iters=10, base=0.1):
    """The release's ``MeanField`` (``alpha0`` 2, ``theta0`` 0.5,
    ``theta1`` 30, 3 x 3 ``unfold``, colours + 10, ``f + 1e-6``)."""
    unfold = torch.nn.Unfold(3, stride=1, padding=1)
    fmap = img + 10
    n_img, _, h, w = fmap.shape
    spatial = torch.tensor([(i // 3 - 1)**2 + (i % 3 - 1)**2
                            for i in range(9)]).float()
    diff = unfold(fmap).view(1, 3, 9, -1) - fmap.view(1, 3, 1, -1)
    kernel = 2.0 * torch.exp(-(diff**2).sum(1) /
                             (2 * 0.25) - spatial.view(1, -1, 1) / (2 * 900.0))
    x = x * targets
    x = (x > 0.5).float() * (1 - 2 * base) + base
    q = torch.cat([1 - x, x], 1)  # [N, 2, H, W]
    for _ in range(iters):
        nll = unfold(-torch.log(q).view(-1, 1, h, w)).view(-1, 2, 9, h * w)
        f = torch.exp(-(nll * kernel[:, None]).sum(2)).view(-1, 2, h, w)
        if iiu is not None:
            f = f + iiu * 0.01
        f[:, 1:] *= targets
        f = f + 1e-6
        f = f / f.sum(1, keepdim=True)
        q = (f > 0.5).float() * (1 - 2 * base) + base
    return q[:, 1] > 0.5


def test_labels_equal_the_release_mean_field():
    """The log-space normalisation gives the release's labels exactly: its
    ``+ 1e-6`` is added to both classes, so the decision is ``f_fg >
    f_bg``."""
    torch.manual_seed(0)
    img = torch.randn(1, 3, 14, 16)
    box = torch.zeros(3, 1, 14, 16)
    box[0, :, 2:10, 3:12] = 1
    box[1, :, 0:14, 5:16] = 1
    box[2, :, 4:9, 1:6] = 1
    probs = torch.rand(3, 1, 14, 16)
    iiu = torch.rand(3, 2, 14, 16)
    kernels = contrast_sensitive_kernel(img).expand(3, -1, -1, -1)
    for unary in (None, iiu):
        want = _release_mean_field(img, probs, box, unary)
        got = mean_field(
            probs[:, 0], kernels, box[:, 0].bool(), cross_unary=unary) > 0.5
        assert torch.equal(got, want)
