"""course_lib.mixing: MixUp and CutMix against torchvision's v2.MixUp / v2.CutMix (chapter 3.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from course_lib.mixing import cutmix, cutmix_boxes, draw_lambdas, mixup


def _batch(n=6, classes=10, size=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, *size, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return images, labels


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_equals_torchvision(alpha):
    images, labels = _batch()
    torch.manual_seed(3)
    ref_x, ref_y = v2.MixUp(alpha=alpha, num_classes=10)(images, labels)
    torch.manual_seed(3)  # the same draw as torchvision's make_params
    lam = float(torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha])).sample(()))
    x, y = mixup(images, F.one_hot(labels, 10).float(), lam)
    torch.testing.assert_close(x, ref_x)
    torch.testing.assert_close(y, ref_y)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_equals_torchvision(seed):
    images, labels = _batch(size=(3, 8, 12), seed=seed)
    torch.manual_seed(seed)
    ref_x, ref_y = v2.CutMix(alpha=1.0, num_classes=10)(images, labels)
    torch.manual_seed(seed)  # replay torchvision's draws: λ, then the centre x, then y
    lam = float(torch.distributions.Beta(torch.tensor([1.0]), torch.tensor([1.0])).sample(()))
    cx, cy = int(torch.randint(12, size=(1,))), int(torch.randint(8, size=(1,)))
    x, y, kept = cutmix(images, F.one_hot(labels, 10).float(), lam, cx, cy)
    torch.testing.assert_close(x, ref_x)
    torch.testing.assert_close(y, ref_y)
    assert 0 <= float(kept) <= 1


def test_stacked_batches_mix_independently():
    """K batches with K draws at once equal K separate calls."""
    k = 4
    images = torch.rand(k, 5, 1, 8, 8)
    targets = F.one_hot(torch.randint(0, 10, (k, 5)), 10).float()
    lam = torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    cx, cy = torch.tensor([0, 3, 7, 4]), torch.tensor([7, 2, 0, 4])
    x, y = mixup(images, targets, lam)
    xc, yc, kept = cutmix(images, targets, lam, cx, cy)
    for i in range(k):
        xi, yi = mixup(images[i], targets[i], float(lam[i]))
        torch.testing.assert_close(x[i], xi)
        torch.testing.assert_close(y[i], yi)
        xci, yci, kept_i = cutmix(images[i], targets[i], float(lam[i]), int(cx[i]), int(cy[i]))
        torch.testing.assert_close(xc[i], xci)
        torch.testing.assert_close(yc[i], yci)
        assert float(kept[i]) == float(kept_i)


def test_cutmix_label_share_is_the_pixel_share():
    images = torch.zeros(2, 1, 8, 8)
    images[0] = 1.0  # image 0 all ones, image 1 all zeros: rolled, image 0 receives image 1's box
    targets = F.one_hot(torch.tensor([0, 1]), 2).float()
    x, y, kept = cutmix(images, targets, 0.3, 4, 4)
    share_kept = x[0].mean().item()
    assert share_kept == pytest.approx(float(kept))
    assert y[0, 0].item() == pytest.approx(float(kept))
    x1, y1, x2, y2, lam_adj = cutmix_boxes(torch.tensor(0.3), 4, 4, 8, 8)
    assert (int(x2) - int(x1)) * (int(y2) - int(y1)) == round((1 - float(lam_adj)) * 64)


def test_draw_lambdas_follow_beta_and_are_reproducible():
    a = draw_lambdas(0.4, 20_000, np.random.default_rng(0))
    b = draw_lambdas(0.4, 20_000, np.random.default_rng(0))
    assert torch.equal(a, b) and a.shape == (20_000,)
    assert abs(a.mean().item() - 0.5) < 0.01  # Beta(α, α) is symmetric
    assert abs(a.var().item() - 1 / (4 * (2 * 0.4 + 1))) < 0.005  # var = 1 / (4 (2α + 1))


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: mixup(torch.rand(4, 8, 8), torch.rand(4, 10), 0.5), ValueError),
        (lambda: mixup(torch.rand(4, 1, 8, 8), torch.rand(3, 10), 0.5), ValueError),
        (lambda: mixup(torch.rand(4, 1, 8, 8), torch.rand(4, 10), 1.5), ValueError),
        (lambda: mixup(torch.rand(4, 1, 8, 8), torch.randint(0, 2, (4, 10)), 0.5), TypeError),
        (lambda: cutmix(torch.rand(4, 1, 8, 8), torch.rand(4, 10), 0.5, 8, 0), ValueError),
        (lambda: cutmix_boxes(0.5, 1, 1, 0, 8), ValueError),
        (lambda: draw_lambdas(0.0, 3, np.random.default_rng(0)), ValueError),
        (lambda: draw_lambdas(1.0, 3, 0), TypeError),
    ],
)
def test_bad_arguments_fail_in_the_house_form(call, error):
    with pytest.raises(error, match="must be"):
        call()
