"""course_lib.augment: from-scratch geometry vs torchvision.transforms.v2, pipelines, seeds."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from course_lib.augment import (
    affine_resample,
    affine_theta,
    apply_pipeline,
    hflip,
    make_pipeline,
    random_affine,
    rotate,
)

BILINEAR = v2.InterpolationMode.BILINEAR


@pytest.fixture
def image():
    return torch.rand(3, 20, 31, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("angle", [7.0, -30.0, 45.0, 90.0, 135.5])
def test_rotate_matches_torchvision(image, angle):
    expected = TF.rotate(image, angle, interpolation=BILINEAR)
    torch.testing.assert_close(rotate(image, angle), expected, atol=1e-5, rtol=0)
    batch = torch.stack([image, image.flip(0)])
    torch.testing.assert_close(
        rotate(batch, angle), TF.rotate(batch, angle, interpolation=BILINEAR), atol=1e-5, rtol=0
    )


def test_rotate_by_90_on_a_square_is_rot90():
    x = torch.arange(25.0).reshape(1, 5, 5)
    torch.testing.assert_close(rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("angle", "scale", "shift"), [(20.0, 1.2, (2.0, -3.0)), (-10.0, 0.8, (1.5, 0.5))]
)
def test_affine_theta_matches_torchvision_affine(image, angle, scale, shift):
    theta = affine_theta(angle, scale, shift, height=20, width=31)
    got = affine_resample(image, theta)
    # torchvision's affine() turns clockwise for positive angles, rotate() counter-clockwise
    expected = TF.affine(
        image,
        angle=-angle,
        translate=list(shift),
        scale=scale,
        shear=[0.0, 0.0],
        interpolation=BILINEAR,
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_flip_is_applied_after_rotation(image):
    theta = affine_theta(25.0, flip=True, height=20, width=31)
    expected = TF.horizontal_flip(TF.rotate(image, 25.0, interpolation=BILINEAR))
    torch.testing.assert_close(affine_resample(image, theta), expected, atol=1e-5, rtol=0)


def test_hflip_is_exact(image):
    assert torch.equal(hflip(image), TF.horizontal_flip(image))
    batch = torch.rand(4, 1, 8, 8)
    assert torch.equal(hflip(batch), torch.flip(batch, dims=(-1,)))


def test_random_affine_is_per_image_and_seeded():
    x = torch.rand(1, 1, 12, 12).expand(6, 1, 12, 12).contiguous()
    a = random_affine(x, degrees=30.0, generator=torch.Generator().manual_seed(5))
    b = random_affine(x, degrees=30.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.allclose(a[0], a[1])  # independent draws per image
    flipped = random_affine(x, degrees=0.0, scale=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(flipped, hflip(x), atol=1e-6, rtol=0)
    same = random_affine(x[0], degrees=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(same, x[0], atol=1e-6, rtol=0)


def test_pipeline_is_reproducible_per_image_and_leaves_global_rng(image):
    pipeline = make_pipeline(degrees=20.0, scale=(0.5, 1.0), flip=True)
    batch = torch.stack([image] * 5)
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    a = apply_pipeline(pipeline, batch, seed=11)
    assert torch.equal(torch.rand(1), expected_next)
    b = apply_pipeline(pipeline, batch, seed=11)
    assert torch.equal(a, b) and a.shape == batch.shape
    assert not torch.equal(a[0], a[1])
    assert apply_pipeline(pipeline, image, seed=1).shape == image.shape
    resized = apply_pipeline(make_pipeline(size=(10, 12)), batch, seed=0)
    assert resized.shape == (5, 3, 10, 12)


def test_flip_only_pipeline_gives_the_image_or_its_mirror(image):
    pipeline = make_pipeline(degrees=0.0, scale=None, flip=True)
    out = apply_pipeline(pipeline, torch.stack([image] * 16), seed=3)
    kinds = [torch.equal(o, image) or torch.equal(o, TF.horizontal_flip(image)) for o in out]
    assert all(kinds)
    assert any(torch.equal(o, image) for o in out) and any(not torch.equal(o, image) for o in out)
