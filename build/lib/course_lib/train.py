"""Training and evaluation loops (chapter 1; used by every chapter after it).

``fit`` is the loop of the source document's section 4.1, written once and correctly: it moves
each batch to the device, zeroes gradients, runs forward / backward / step, and after every
epoch evaluates on the validation set, returning a per-epoch history of loss and accuracy.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn
from tqdm.std import tqdm  # plain text bar: no widget warnings in notebooks or the book

from course_lib.device import select_device

History = dict[str, list[float]]
"""Per-epoch metrics: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
``val_accuracy`` (accuracy is ``nan`` for non-classification targets)."""


def _is_classification(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    return outputs.ndim == 2 and outputs.shape[1] > 1 and not targets.is_floating_point()


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _check_model_and_loader(model: nn.Module, loader: Iterable, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"{name} must be an iterable of (inputs, targets) batches")


def default_progress() -> bool:
    """Show progress bars only in an interactive terminal (quiet in CI, nbval and the book).

    Set ``COURSE_PROGRESS=1`` (or pass ``progress=True``) to force them on, ``0`` to force off.
    """
    forced = os.environ.get("COURSE_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false", "False")
    return sys.stderr.isatty()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` over ``loader`` (model in eval mode, no gradients).

    Loss is averaged per example: ``sum_b loss_b * |b| / N``. Accuracy is the fraction of
    ``argmax`` predictions equal to the integer targets, or ``nan`` for regression targets.
    """
    _check_model_and_loader(model, loader, "loader")
    device = select_device(device)
    was_training = model.training
    model.eval()
    total_loss, correct, count, classification = 0.0, 0, 0, True
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        total_loss += loss_fn(outputs, targets).item() * len(targets)
        classification = classification and _is_classification(outputs, targets)
        if classification:
            correct += (outputs.argmax(dim=1) == targets).sum().item()
        count += len(targets)
    model.train(was_training)
    if count == 0:
        raise ValueError("loader must yield at least one batch")
    accuracy = correct / count if classification else float("nan")
    return {"loss": total_loss / count, "accuracy": accuracy}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    device: str | torch.device | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``; return the history.

    Each step: ``optimizer.zero_grad() → loss = loss_fn(model(x), y) → loss.backward() →
    optimizer.step()``. ``amp_dtype`` (e.g. ``torch.bfloat16``) runs the forward pass under
    ``torch.autocast`` (mixed precision, chapter 3.4). ``after_step(model)`` is called after
    every optimizer step (e.g. to re-apply a pruning mask). ``scheduler.step()`` is called once
    per epoch. The model is moved to ``device`` (default: :func:`select_device`).
    """
    _check_model_and_loader(model, train_loader, "train_loader")
    if val_loader is not None:
        _check_model_and_loader(model, val_loader, "val_loader")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar tensor")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    device = select_device(device)
    model.to(device)
    progress = default_progress() if progress is None else progress
    history: History = {
        "epoch": [],
        "train_loss": [],
        "train_accuracy": [],
        "val_loss": [],
        "val_accuracy": [],
    }
    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total_loss, correct, count, classification = 0.0, 0, 0, True
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            with _autocast(device, amp_dtype):
                outputs = model(inputs)
                loss = loss_fn(outputs, targets)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(model)
            total_loss += loss.item() * len(targets)
            classification = classification and _is_classification(outputs, targets)
            if classification:
                correct += (outputs.argmax(dim=1) == targets).sum().item()
            count += len(targets)
        if count == 0:
            raise ValueError("train_loader must yield at least one batch")
        if scheduler is not None:
            scheduler.step()
        history["epoch"].append(epoch)
        history["train_loss"].append(total_loss / count)
        history["train_accuracy"].append(correct / count if classification else float("nan"))
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, device)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            bar.set_postfix(train_loss=f"{total_loss / count:.4f}", val_loss=f"{val['loss']:.4f}")
    return history


def save_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **extra
) -> Path:
    """Save model (and optimizer) state atomically: write a temporary file, then rename it,
    so an interrupted save never leaves a corrupt checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model.state_dict(), "extra": extra}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (no
    arbitrary code runs while unpickling); returns the ``extra`` values saved with it."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if "optimizer" not in payload:
            raise ValueError(f"checkpoint {path} holds no optimizer state")
        optimizer.load_state_dict(payload["optimizer"])
    return payload["extra"]
