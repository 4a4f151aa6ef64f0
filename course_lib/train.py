"""Training and evaluation loops (chapter 1; used by every chapter after it).

``fit`` is the loop of the source document's section 4.1, written once and correctly: it moves
each batch to the device, zeroes gradients, runs forward / backward / step, and after every
epoch evaluates on the validation set, returning a per-epoch history of loss and accuracy.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import uuid
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
        raise TypeError(
            f"{name} must be an iterable of (inputs, targets) batches, got {type(loader).__name__}"
        )


def _check_loss_fn(loss_fn) -> None:
    if not callable(loss_fn):
        raise TypeError(
            "loss_fn must be callable: loss_fn(outputs, targets) -> scalar tensor, "
            f"got {type(loss_fn).__name__}"
        )


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
    _check_loss_fn(loss_fn)
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
    _check_optimizer(optimizer)
    _check_loss_fn(loss_fn)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(
            "scheduler must be None or a learning-rate scheduler with a step() method, "
            f"got {type(scheduler).__name__}"
        )
    if amp_dtype is not None and amp_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype!r}"
        )
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be None or a bool, got {type(progress).__name__}")
    if after_step is not None and not callable(after_step):
        raise TypeError(
            f"after_step must be None or callable: after_step(model), "
            f"got {type(after_step).__name__}"
        )
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


def _check_optimizer(optimizer, allow_none: bool = False) -> None:
    if optimizer is None and allow_none:
        return
    if not isinstance(optimizer, torch.optim.Optimizer):
        allowed = "a torch.optim.Optimizer or None" if allow_none else "a torch.optim.Optimizer"
        raise TypeError(f"optimizer must be {allowed}, got {type(optimizer).__name__}")


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable: on POSIX the directory entry itself must reach the disk."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open a directory
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, uniquely named file next to ``path``, opened for writing: ``(fd, name)``.

    Like ``tempfile.mkstemp(dir=path.parent)`` (``O_CREAT | O_EXCL``: never an existing file,
    so two concurrent saves cannot clobber each other's temporary), but created with mode
    ``0o666`` minus the umask, so the final checkpoint gets the usual permissions (mkstemp's
    are ``0o600``).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - a 48-bit random name collided
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")  # pragma: no cover


def _check_checkpoint_args(path, model, optimizer) -> Path:
    """The arguments shared by save_checkpoint and load_checkpoint; returns ``Path(path)``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_optimizer(optimizer, allow_none=True)
    return Path(path)


def save_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **extra
) -> Path:
    """Save model (and optimizer) state atomically: ``{"model": state_dict,
    "optimizer": state_dict, "extra": extra}``.

    The bytes go to a uniquely named temporary file in the same folder, are flushed to disk
    (``fsync``) and only then renamed over ``path`` with ``os.replace`` (atomic on one file
    system). A save interrupted at any point leaves the previous checkpoint intact and no stray
    temporary file. ``extra`` values should be plain data (numbers, strings, lists, dicts,
    tensors): :func:`load_checkpoint` reads with ``weights_only=True`` and refuses anything else.
    Returns ``path``.
    """
    path = _check_checkpoint_args(path, model, optimizer)
    if path.is_dir():
        raise ValueError(f"path must name a file, got the directory {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model.state_dict(), "extra": extra}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``);
    return the ``extra`` values saved with it.

    It reads with ``torch.load(..., weights_only=True)``: only tensors and plain containers are
    unpickled, so a file crafted to run code when loaded is refused (``ValueError``) instead of
    executed. A missing file raises ``FileNotFoundError``; a truncated or corrupt file, or one
    that does not hold ``{"model": state_dict, ...}``, raises ``ValueError`` naming the path.
    """
    path = _check_checkpoint_args(path, model, optimizer)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"path must name a checkpoint file, got {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        boilerplate = ("Weights only load failed", "Check the documentation", "Please file")
        detail = " ".join(
            part.strip().replace("WeightsUnpickler error:", "").strip()
            for part in str(err).split("\n\n")
            if part.strip() and not part.strip().startswith(boilerplate)
        )
        raise ValueError(
            f"{path} is not a checkpoint that loads safely: weights_only=True refused to "
            "unpickle it (it is corrupt, or holds objects other than tensors and plain data, "
            f"which could run code): {detail[:200]}"
        ) from err
    except Exception as err:  # truncated zip, empty file, random bytes: all the same to a user
        raise ValueError(
            f"{path} is not a complete checkpoint (truncated or corrupt file; "
            f"{type(err).__name__}: {str(err)[:200]})"
        ) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        found = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path} is not a checkpoint written by save_checkpoint: expected a dict with a "
            f"'model' state dict, got {found}"
        )
    extra = payload.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(
            f"{path} is not a checkpoint written by save_checkpoint: 'extra' must be a dict, "
            f"got {type(extra).__name__}"
        )
    if optimizer is not None and not isinstance(payload.get("optimizer"), dict):
        raise ValueError(f"checkpoint {path} holds no optimizer state")
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return extra
