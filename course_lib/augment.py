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

import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim not in (3, 4):
        raise ValueError(
            f"images must have shape (C, H, W) or (N, C, H, W), got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
    if images.numel() == 0:
        raise ValueError(f"images must hold at least one pixel, got shape {tuple(images.shape)}")
    return images


def _finite_number(name: str, value) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


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
    angle = _finite_number("angle", angle)
    if not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(translate, (tuple, list)) or len(translate) != 2:
        raise ValueError(f"translate must be a pair (tx, ty) in pixels, got {translate!r}")
    translate = (_finite_number("translate[0]", translate[0]),
                 _finite_number("translate[1]", translate[1]))  # fmt: skip
    return _theta_batch(
        torch.tensor([float(angle)]),
        torch.tensor([float(scale)]),
        torch.tensor([[float(translate[0]), float(translate[1])]]),
        torch.tensor([bool(flip)]),
        height,
        width,
    )[0]


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
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta must be a torch.Tensor of shape (2, 3), got {type(theta).__name__}")
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


def _check_range(name: str, value, low: float) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (min, max), got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not low <= lo <= hi:
        raise ValueError(f"{name} must satisfy {low} <= min <= max, got {tuple(value)}")
    return lo, hi


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
    if not isinstance(degrees, (int, float)) or not 0 <= degrees <= 180:
        raise ValueError(f"degrees must be in [0, 180], got {degrees!r}")
    lo, hi = _check_range("scale", scale, 1e-6)
    if not isinstance(translate, (int, float)) or not 0 <= translate < 1:
        raise ValueError(f"translate must be a fraction in [0, 1), got {translate!r}")
    if not isinstance(flip_p, (int, float)) or not 0 <= flip_p <= 1:
        raise ValueError(f"flip_p must be a probability in [0, 1], got {flip_p!r}")
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
    if not isinstance(degrees, (int, float)) or not 0 <= degrees <= 180:
        raise ValueError(f"degrees must be in [0, 180], got {degrees!r}")
    if size is not None:
        sizes = size if isinstance(size, (tuple, list)) else (size,)
        if len(sizes) not in (1, 2) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes
        ):
            raise ValueError(
                f"size must be None, a positive int or a pair (height, width) of positive ints, "
                f"got {size!r}"
            )
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be a bool, got {type(flip).__name__}")
    steps: list[Callable] = []
    if degrees > 0:
        steps.append(v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR))
    if scale is not None:
        lo, hi = _check_range("scale", scale, 1e-6)
        if hi > 1:
            raise ValueError(
                f"scale must be a pair (min, max) of area fractions with max <= 1, got {hi}"
            )
        steps.append(_ResizedCropKeepSize(size, (lo, hi)))
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
    if not callable(pipeline):
        raise TypeError(f"pipeline must be callable, got {type(pipeline).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")

    def run():
        if images.ndim == 3:
            return pipeline(images)
        return torch.stack([pipeline(image) for image in images])

    if seed is None:
        return run()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return run()
