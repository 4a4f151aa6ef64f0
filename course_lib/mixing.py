"""Label-mixing augmentation: MixUp and CutMix (chapter 3.3).

Both build a training example from *two*: image ``x_i`` and its batch neighbour ``x_{i-1}``
(the batch rolled by one, the pairing of ``torchvision.transforms.v2.MixUp`` / ``CutMix``),
and mix the one-hot labels in the same proportion.

- MixUp {cite}`zhang2018mixup`: ``x̃ = λ x_i + (1 − λ) x_{i−1}``, ``ỹ = λ y_i + (1 − λ) y_{i−1}``.
- CutMix {cite}`yun2019cutmix`: a box of ``x_{i−1}`` is pasted into ``x_i``; the labels are
  mixed with ``λ' = 1 − (box area) / (image area)``.

``λ ~ Beta(α, α)``. Unlike torchvision, which draws one ``λ`` per call, these functions take
``λ`` (and the box centres) as tensors over any leading axes, so that K models trained at
once each mix their own batch with their own draw in one operation. With one batch and the
same draw they equal torchvision's transforms (``tests/test_mixing.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib import _checks

__all__ = ["cutmix", "cutmix_boxes", "draw_lambdas", "mixup"]


def _check_batch(images, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """``images (..., B, C, H, W)`` floating, ``targets (..., B, classes)`` floating."""
    _checks.tensor("images", images, floating=True, nonempty=True)
    _checks.tensor("targets", targets, floating=True, nonempty=True)
    if images.ndim < 4:
        raise ValueError(f"images must be a tensor of shape (..., batch, channels, height, width), "
                         f"got {tuple(images.shape)}")  # fmt: skip
    if targets.ndim != images.ndim - 2 or targets.shape[:-1] != images.shape[:-3]:
        raise ValueError(f"targets must be of shape {(*images.shape[:-3], 'classes')} "
                         f"(soft or one-hot labels) for images of shape "
                         f"{tuple(images.shape)}, got {tuple(targets.shape)}")  # fmt: skip
    return images, targets


def _per_batch(name: str, value, lead: tuple[int, ...]) -> torch.Tensor:
    """A number, or a tensor of shape ``lead`` (one value per leading index), as float64."""
    if isinstance(value, torch.Tensor):
        if tuple(value.shape) not in (lead, ()):
            raise ValueError(f"{name} must be a number or a tensor of shape {lead}, "
                             f"got shape {tuple(value.shape)}")  # fmt: skip
        return value.detach().to(torch.float64).expand(lead)
    return torch.full(lead, _checks.real(name, value), dtype=torch.float64)


def mixup(images: torch.Tensor, targets: torch.Tensor, lam) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp of a batch with itself rolled by one along the batch axis (chapter 3.3):
    ``x̃ = λ x + (1 − λ) roll(x)``, ``ỹ = λ y + (1 − λ) roll(y)``.

    ``images``: ``(..., B, C, H, W)``; ``targets``: ``(..., B, classes)`` one-hot or soft;
    ``lam``: a number in ``[0, 1]`` or a tensor with one value per leading index (shape
    ``images.shape[:-4]``). Returns the mixed images and targets."""
    images, targets = _check_batch(images, targets)
    lead = tuple(images.shape[:-4])
    lam64 = _per_batch("lam", lam, lead)
    if ((lam64 < 0) | (lam64 > 1)).any():
        raise ValueError(f"lam must be in [0, 1], got {lam64.flatten().tolist()}")
    lam_x = lam64.to(images).view(*lead, 1, 1, 1, 1)
    lam_y = lam64.to(targets).view(*lead, 1, 1)
    mixed = images.roll(1, -4) * (1 - lam_x) + images * lam_x
    labels = targets.roll(1, -2) * (1 - lam_y) + targets * lam_y
    return mixed, labels


def cutmix_boxes(lam, cx, cy, height: int, width: int):
    """The CutMix boxes of torchvision's ``v2.CutMix`` (chapter 3.3): half-sides
    ``⌊r W⌋, ⌊r H⌋`` with ``r = ½ √(1 − λ)`` around the centre ``(cx, cy)``, clipped to the image.
    Returns ``(x1, y1, x2, y2, lam_adjusted)``, each a tensor of ``lam``'s shape, with
    ``lam_adjusted = 1 − (x2 − x1)(y2 − y1) / (H W)``: the share of the image that is kept."""
    height = _checks.positive_int("height", height)
    width = _checks.positive_int("width", width)
    lam = torch.as_tensor(lam, dtype=torch.float64)
    if ((lam < 0) | (lam > 1)).any():
        raise ValueError(f"lam must be in [0, 1], got {lam.flatten().tolist()}")
    cx, cy = torch.as_tensor(cx, dtype=torch.int64), torch.as_tensor(cy, dtype=torch.int64)
    if cx.shape != lam.shape or cy.shape != lam.shape:
        raise ValueError(f"cx and cy must be of the shape of lam {tuple(lam.shape)}, "
                         f"got {tuple(cx.shape)} and {tuple(cy.shape)}")  # fmt: skip
    if ((cx < 0) | (cx >= width)).any() or ((cy < 0) | (cy >= height)).any():
        raise ValueError(f"cx and cy must be pixel positions in [0, {width}) × [0, {height}), "
                         f"got {cx.tolist()} and {cy.tolist()}")  # fmt: skip
    r = 0.5 * torch.sqrt(1.0 - lam)
    # int() in torchvision truncates toward 0; r >= 0, so floor is the same
    half_w = torch.floor(r * width).to(torch.int64)
    half_h = torch.floor(r * height).to(torch.int64)
    x1, y1 = (cx - half_w).clamp(min=0), (cy - half_h).clamp(min=0)
    x2, y2 = (cx + half_w).clamp(max=width), (cy + half_h).clamp(max=height)
    lam_adjusted = 1.0 - ((x2 - x1) * (y2 - y1)).double() / (width * height)
    return x1, y1, x2, y2, lam_adjusted


def cutmix(images: torch.Tensor, targets: torch.Tensor, lam, cx, cy):
    """CutMix of a batch with itself rolled by one along the batch axis (chapter 3.3): inside
    the box of :func:`cutmix_boxes` the pixels come from ``roll(x)``; the labels are mixed
    with the kept share ``λ'``, ``ỹ = λ' y + (1 − λ') roll(y)``.

    Shapes as in :func:`mixup`; ``lam``, ``cx``, ``cy`` are numbers or tensors with one value
    per leading index. Returns ``(images, targets, lam_adjusted)``."""
    images, targets = _check_batch(images, targets)
    lead = tuple(images.shape[:-4])
    height, width = images.shape[-2:]
    lam64 = _per_batch("lam", lam, lead)
    cx, cy = (torch.as_tensor(c, dtype=torch.int64) for c in (cx, cy))
    cx, cy = (c.expand(lead) if c.ndim == 0 else c for c in (cx, cy))
    x1, y1, x2, y2, kept = cutmix_boxes(lam64, cx, cy, height, width)
    device = images.device
    cols = torch.arange(width, device=device)
    rows = torch.arange(height, device=device)
    shape = (*lead, 1, 1, 1, 1)
    inside_x = (cols >= x1.to(device).view(shape)) & (cols < x2.to(device).view(shape))
    inside_y = (rows.view(-1, 1) >= y1.to(device).view(shape)) & \
        (rows.view(-1, 1) < y2.to(device).view(shape))  # fmt: skip
    mixed = torch.where(inside_x & inside_y, images.roll(1, -4), images)
    lam_y = kept.to(targets).view(*lead, 1, 1)
    labels = targets.roll(1, -2) * (1 - lam_y) + targets * lam_y
    return mixed, labels, kept


def draw_lambdas(alpha: float, shape, rng: np.random.Generator) -> torch.Tensor:
    """``λ ~ Beta(α, α)`` of the given shape from a NumPy generator, as float64 (chapter 3.3).
    ``α = 1``: uniform on ``[0, 1]``; small ``α``: most draws near 0 or 1 (mild mixing)."""
    alpha = _checks.positive("alpha", alpha)
    _checks.instance("rng", rng, np.random.Generator, "a numpy.random.Generator")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"shape must be a tuple of ints >= 0, got {shape!r}")
    return torch.from_numpy(rng.beta(alpha, alpha, size=shape)).to(torch.float64)
