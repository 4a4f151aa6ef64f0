"""Label-preserving data augmentation (数据增强) on image tensors (chapter 3.3).

Two versions of the same geometry, so the reader can see what the library call does:

* **from scratch** — an affine map is an inverse-sampling grid: every output pixel ``p`` reads
  the input at ``M⁻¹ p`` (bilinear interpolation, zeros outside). :func:`affine_theta` builds
  ``M⁻¹`` in the normalized coordinates of ``torch.nn.functional.affine_grid``;
  :func:`affine_resample` samples with ``grid_sample``; :func:`hflip` is index arithmetic.
  :func:`random_affine` draws one transform *per image* and applies the whole batch at once.
* **torchvision** — :func:`make_pipeline` composes ``torchvision.transforms.v2`` random
  rotation, random resized crop and horizontal flip; :func:`apply_pipeline` applies it to one
  image or a batch (independent draws per image), reproducibly under a seed.

Images are float tensors ``(C, H, W)`` or batches ``(N, C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from course_lib import _checks


def _check_images(images) -> torch.Tensor:
    """Images ``(C, H, W)`` or a batch ``(N, C, H, W)``: a non-empty floating-point tensor."""
    return _checks.tensor("images", images, ndim=(3, 4), floating=True, nonempty=True)


def affine_theta(
    angle: float = 0.0,
    scale: float = 1.0,
    translate: Sequence[float] = (0.0, 0.0),
    flip: bool = False,
    *,
    height: int,
    width: int,
) -> torch.Tensor:
    """The ``(2, 3)`` matrix ``theta`` for ``F.affine_grid`` that rotates by ``angle`` degrees
    counter-clockwise about the image centre, zooms by ``scale`` (``> 1`` enlarges), shifts by
    ``translate = (tx, ty)`` pixels and, with ``flip=True``, mirrors left-right last.

    In pixel coordinates centred on the image (``x`` right, ``y`` down) the forward map is
    ``p' = Flip · (s·R(θ) p + t)``; sampling needs its inverse

    $$p = \\tfrac1s R(-θ)\\,(\\mathrm{Flip}\\,p' - t),\\qquad
    R(-θ) = \\begin{pmatrix}\\cos θ & -\\sin θ\\\\ \\sin θ & \\cos θ\\end{pmatrix}$$

    (with ``y`` pointing down, this ``R(-θ)`` is the inverse of a counter-clockwise turn), then
    rescaled to the ``[-1, 1]`` coordinates of ``affine_grid`` (``x / (W/2)``, ``y / (H/2)``).
    """
    angle, scale = _checks.real("angle", angle), _checks.positive("scale", scale)
    height, width = _checks.positive_int("height", height), _checks.positive_int("width", width)
    if not isinstance(translate, (tuple, list)) or len(translate) != 2:
        raise ValueError(f"translate must be a pair (tx, ty) in pixels, got {translate!r}")
    shift = [_checks.real("translate[0]", translate[0]), _checks.real("translate[1]", translate[1])]
    flip = _checks.flag("flip", flip)
    return _theta_batch(
        torch.tensor([angle]), torch.tensor([scale]), torch.tensor([shift]), torch.tensor([flip]),
        height, width,
    )[0]  # fmt: skip


def _theta_batch(angles, scales, shifts, flips, height: int, width: int) -> torch.Tensor:
    """:func:`affine_theta` for ``N`` transforms at once (vectorized, float64 inside)."""
    a = torch.deg2rad(angles.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    inv_s = 1.0 / scales.to(torch.float64)
    m = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    m = m * inv_s[:, None, None]  # (s R)^-1, shape (N, 2, 2)
    f = torch.ones(len(angles), 2, dtype=torch.float64)
    f[:, 0] = torch.where(flips, -1.0, 1.0)
    linear = m * f[:, None, :]  # m @ diag(f): p = m (f p' - t) = (m f) p' - m t
    offset = -(m @ shifts.to(torch.float64)[:, :, None])[:, :, 0]
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    # normalized coordinates p_n = p / half: theta = diag(1/half) · [linear | offset] · diag(half)
    theta = torch.empty(len(angles), 2, 3, dtype=torch.float64)
    theta[:, :, :2] = linear * half[None, None, :] / half[None, :, None]
    theta[:, :, 2] = offset / half
    return theta.to(torch.float32)


def affine_resample(images: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear"):
    """Resample ``images`` through the inverse map ``theta`` (``(2, 3)`` shared by the batch, or
    ``(N, 2, 3)`` one per image): ``out[p] = in[theta · (p, 1)]``, bilinear (or ``"nearest"``)
    interpolation, zeros where the map leaves the image (``grid_sample``, align_corners=False)."""
    images = _check_images(images)
    _checks.one_of("mode", mode, ("bilinear", "nearest"))
    _checks.tensor("theta", theta)
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    n = batch.shape[0]
    theta = theta.to(device=batch.device, dtype=batch.dtype)
    if theta.shape == (2, 3):
        theta = theta.expand(n, 2, 3)
    elif theta.shape != (n, 2, 3):
        raise ValueError(f"theta must have shape (2, 3) or ({n}, 2, 3), got {tuple(theta.shape)}")
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out[0] if single else out


def rotate(images: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate by ``angle`` degrees counter-clockwise about the centre, from scratch
    (:func:`affine_theta` + :func:`affine_resample`); same output as
    ``torchvision.transforms.v2.functional.rotate(images, angle, BILINEAR)``."""
    images = _check_images(images)
    h, w = images.shape[-2:]
    return affine_resample(images, affine_theta(angle, height=h, width=w))


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right by index arithmetic: ``out[..., j] = in[..., W - 1 - j]``."""
    images = _check_images(images)
    w = images.shape[-1]
    return images[..., torch.arange(w - 1, -1, -1, device=images.device)]


def random_affine(
    images: torch.Tensor,
    degrees: float = 15.0,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.0,
    flip_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random rotation, zoom, shift and flip, drawn independently *for every image* and applied
    to the whole batch in one ``grid_sample`` call (fast enough to run inside a training loop).

    Angle ``~ U(-degrees, degrees)``, scale ``~ U(scale)``, shift ``~ U(-translate, translate)``
    times the image size, flip with probability ``flip_p``. Same ``generator`` seed, same output.
    """
    images = _check_images(images)
    degrees = _checks.real("degrees", degrees, 0, 180)
    lo, hi = _checks.pair("scale", scale, 1e-6)
    translate = _checks.real("translate", translate, 0, 1, high_open=True)
    flip_p = _checks.fraction("flip_p", flip_p, closed=True)
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    n, _, h, w = batch.shape
    u = torch.rand(n, 5, generator=generator)
    angles = (2 * u[:, 0] - 1) * degrees
    scales = lo + (hi - lo) * u[:, 1]
    shifts = (2 * u[:, 2:4] - 1) * translate * torch.tensor([w, h])
    flips = u[:, 4] < flip_p
    out = affine_resample(batch, _theta_batch(angles, scales, shifts, flips, h, w))
    return out[0] if single else out


def make_pipeline(
    degrees: float = 15.0,
    scale: tuple[float, float] = (0.8, 1.0),
    flip: bool = True,
    size: int | tuple[int, int] | None = None,
) -> v2.Compose:
    """A ``torchvision.transforms.v2`` augmentation pipeline (chapter 3.3, {cite}`shorten2019`):
    ``RandomRotation(degrees)`` → ``RandomResizedCrop(size, scale)`` (a crop covering a random
    fraction ``scale`` of the area, resized back to ``size``: a random zoom) →
    ``RandomHorizontalFlip`` if ``flip``. ``size=None`` keeps each input's size; ``degrees=0`` or
    ``scale=None`` leaves that step out. Flip only where a mirror keeps the label (photos, not
    digits)."""
    degrees = _checks.real("degrees", degrees, 0, 180)
    if size is not None:
        sizes = _checks.ints("size", size if isinstance(size, (tuple, list)) else (size,))
        if len(sizes) > 2:
            raise ValueError(f"size must be None, an int or a pair (height, width), got {size!r}")
    flip = _checks.flag("flip", flip)
    steps: list[Callable] = []
    if degrees > 0:
        steps.append(v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR))
    if scale is not None:  # fractions of the image area
        steps.append(_ResizedCropKeepSize(size, _checks.pair("scale", scale, 1e-6, 1)))
    if flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    return v2.Compose(steps) if steps else v2.Compose([v2.Identity()])


class _ResizedCropKeepSize(torch.nn.Module):
    """``v2.RandomResizedCrop`` whose output size defaults to the input's size."""

    def __init__(self, size, scale):
        super().__init__()
        self.size, self.scale = size, scale

    def forward(self, image):
        size = self.size if self.size is not None else list(image.shape[-2:])
        return v2.RandomResizedCrop(size, scale=self.scale, antialias=True)(image)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}"


def apply_pipeline(
    pipeline: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    seed: int | None = None,
) -> torch.Tensor:
    """Apply ``pipeline`` to one image ``(C, H, W)`` or to each image of a batch
    ``(N, C, H, W)`` with its *own* random draw (a v2 transform called on a batch tensor would
    apply one draw to all). With ``seed`` the draws come from a forked, seeded RNG: same seed,
    same output, and the global RNG is left untouched."""
    images = _check_images(images)
    _checks.function("pipeline", pipeline, "pipeline(image) -> image")
    seed = _checks.seed("seed", seed, allow_none=True)

    def run():
        if images.ndim == 3:
            return pipeline(images)
        return torch.stack([pipeline(image) for image in images])

    if seed is None:
        return run()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return run()
