"""Training and evaluation loops (chapter 1; used by every chapter after it).

``fit`` is the loop of the source document's section 4.1, written once and correctly, and the
*only* training loop of the course: distillation (``distill.train_student``), early stopping
(``recipes.fit_early_stopping``) and data-parallel training (``parallel.train_data_parallel``)
are thin wrappers around it. One step is

    zero_grad → loss = loss_fn(model(x), y) → backward → [unscale] → clip → step → [schedule]

with the options chapter 3.1 teaches (learning-rate schedules per step or per epoch, gradient
clipping with the norm recorded before clipping) and those of chapter 3.4 (mixed precision:
bfloat16 autocast, or float16 autocast with a ``GradScaler`` so that small gradients do not
underflow to zero). Losses and accuracies accumulate *on the device*; the host synchronises
once per epoch, never per step (chapter 3.4: CUDA runs asynchronously, and a ``.item()`` per
step makes the CPU wait for the GPU every step).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn
from tqdm.std import tqdm  # plain text bar: no widget warnings in notebooks or the book

from course_lib import _checks
from course_lib.device import select_device

History = dict[str, list]
"""What :func:`fit` records.

Per epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``
(accuracy is ``nan`` for non-classification targets), ``skipped_steps`` (optimizer steps the
float16 ``GradScaler`` skipped because a gradient was inf/NaN). Per optimizer step: ``lr`` (the
learning rate of the first parameter group used by that step), ``grad_norm`` (the total
gradient norm ``‖g‖₂`` *before* clipping) and ``step_loss`` (the mini-batch loss). With early
stopping: ``best_epoch`` (one entry)."""

LossHook = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple]
"""``loss_hook(model, inputs, targets) -> (loss, outputs)``: replaces the default
``outputs = model(inputs); loss = loss_fn(outputs, targets)`` (distillation adds the teacher's
logits here). ``outputs`` may be ``None`` when accuracy means nothing."""


def _is_classification(outputs: torch.Tensor | None, targets: torch.Tensor) -> bool:
    return (
        outputs is not None
        and outputs.ndim == 2
        and outputs.shape[1] > 1
        and not targets.is_floating_point()
    )


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _loss_fn(loss_fn) -> Callable:
    return _checks.function("loss_fn", loss_fn, "loss_fn(outputs, targets) -> scalar tensor")


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
    """Mean loss and accuracy of ``model`` over ``loader`` (eval mode, no gradients).

    Both are means *per example*, also when the last batch is smaller:
    ``loss = Σ_b loss_b·|b| / N`` (``loss_fn`` returns the batch mean) and
    ``accuracy = #{argmax = y} / N``, or ``nan`` for regression targets. The model's
    train/eval mode is restored afterwards, even if a batch raises.
    """
    _checks.module("model", model)
    _checks.batches("loader", loader)
    _loss_fn(loss_fn)
    device = select_device(device)
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count, classification = 0, True
    try:
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            total_loss += loss_fn(outputs, targets).detach().double() * len(targets)
            classification = classification and _is_classification(outputs, targets)
            if classification:
                correct += (outputs.argmax(dim=1) == targets).sum()
            count += len(targets)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("loader must yield at least one batch, got none")
    accuracy = correct.item() / count if classification else float("nan")
    return {"loss": total_loss.item() / count, "accuracy": accuracy}


def _grad_norm(optimizer: torch.optim.Optimizer, max_norm: float | None) -> torch.Tensor:
    """Total 2-norm of all gradients, ``‖g‖₂ = sqrt(Σ_p ‖g_p‖²)``, before clipping; clips to
    ``max_norm`` when given (``torch.nn.utils.clip_grad_norm_``). Stays on the device."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))
    # FSDP2 (chapter 3.4) shards gradients as DTensors: their norm is a DTensor; gather it.
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def _check_fit_options(scheduler, scheduler_interval, clip_grad_norm, amp_dtype, progress,
                       after_step, loss_hook, patience, restore_best, val_loader) -> None:
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(
            "scheduler must be None or a learning-rate scheduler with a step() method, "
            f"got {type(scheduler).__name__}"
        )
    _checks.one_of("scheduler_interval", scheduler_interval, ("step", "epoch"))
    _checks.positive("clip_grad_norm", clip_grad_norm, allow_none=True)
    if amp_dtype is not None and amp_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype!r}"
        )
    if progress is not None:
        _checks.flag("progress", progress)
    _checks.callable_or_none("after_step", after_step, "after_step(model)")
    _checks.callable_or_none("loss_hook", loss_hook,
                             "loss_hook(model, inputs, targets) -> (loss, outputs)")  # fmt: skip
    _checks.positive_int("patience", patience, allow_none=True)
    _checks.flag("restore_best", restore_best)
    if val_loader is None and (patience is not None or restore_best):
        raise ValueError(
            "val_loader must be an iterable of (inputs, targets) batches when patience or "
            "restore_best is used (early stopping picks the epoch on it), got None"
        )
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if plateau and (scheduler_interval != "epoch" or val_loader is None):
        raise ValueError(
            "scheduler must be stepped per epoch with a val_loader when it is ReduceLROnPlateau "
            "(it reads the validation loss), got "
            f"scheduler_interval={scheduler_interval!r}, val_loader={val_loader!r}"
        )


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
    scheduler_interval: str = "epoch",
    clip_grad_norm: float | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    loss_hook: LossHook | None = None,
    patience: int | None = None,
    restore_best: bool = False,
) -> History:
    """Train ``model`` for at most ``epochs`` passes over ``train_loader``; return the
    :data:`History`.

    - ``scheduler``: any ``torch.optim.lr_scheduler`` scheduler, stepped after every optimizer
      step (``scheduler_interval="step"``: warm-up, cosine, OneCycle over steps) or after every
      epoch (``"epoch"``, the default; ``ReduceLROnPlateau`` receives the validation loss) —
      the convention of PyTorch Lightning (chapter 3.1).
    - ``clip_grad_norm``: rescale the gradients to total norm ``≤ c``,
      ``g ← g · min(1, c / ‖g‖₂)`` (chapter 3.1). ``grad_norm`` is recorded either way.
    - ``amp_dtype``: ``torch.bfloat16`` runs the forward pass under ``torch.autocast``;
      ``torch.float16`` does too, and scales the loss with ``torch.amp.GradScaler`` (on the CPU
      as well): gradients are computed for ``s·L``, unscaled before clipping, and a step whose
      gradients overflowed is skipped and counted in ``skipped_steps`` (chapter 3.4).
    - ``after_step(model)``: called after every optimizer step (e.g. to re-apply a mask).
    - ``loss_hook(model, inputs, targets) -> (loss, outputs)``: a different loss per batch
      (distillation, chapter 3.2).
    - ``patience``: stop once the validation loss has not improved for that many epochs;
      ``restore_best``: at the end load the weights of the epoch with the lowest validation loss
      (early stopping, 早停, chapter 4.1). Either records ``best_epoch``.

    The model is moved to ``device`` (default: :func:`select_device`). No value is copied to
    the host during an epoch: losses, accuracies and norms stay on the device until its end.
    """
    _checks.module("model", model)
    _checks.batches("train_loader", train_loader)
    _checks.batches("val_loader", val_loader, allow_none=True)
    _checks.optimizer("optimizer", optimizer)
    _loss_fn(loss_fn)
    epochs = _checks.positive_int("epochs", epochs)
    _check_fit_options(scheduler, scheduler_interval, clip_grad_norm, amp_dtype, progress,
                       after_step, loss_hook, patience, restore_best, val_loader)  # fmt: skip
    device = select_device(device)
    model.to(device)
    progress = default_progress() if progress is None else progress
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    early = patience is not None or restore_best
    history: History = {
        key: []
        for key in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                    "skipped_steps", "lr", "grad_norm", "step_loss")  # fmt: skip
    }
    best_loss, best_epoch, best_state = math.inf, 0, None

    def default_loss(model, inputs, targets):
        outputs = model(inputs)
        return loss_fn(outputs, targets), outputs

    step_loss = default_loss if loss_hook is None else loss_hook
    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        count, classification = 0, True
        losses, norms = [], []
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp_dtype):
                loss, outputs = step_loss(model, inputs, targets)
            history["lr"].append(float(optimizer.param_groups[0]["lr"]))
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # clip and record the true gradient, not s·g
            norms.append(_grad_norm(optimizer, clip_grad_norm))
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)  # skipped when a gradient is inf/NaN
                scaler.update()
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            if after_step is not None:
                after_step(model)
            loss = loss.detach().float()
            losses.append(loss)
            total_loss += loss.double() * len(targets)
            classification = classification and _is_classification(outputs, targets)
            if classification:
                correct += (outputs.detach().argmax(dim=1) == targets).sum()
            count += len(targets)
        if count == 0:
            raise ValueError("train_loader must yield at least one batch, got none")
        # one host synchronisation per epoch
        norms_host = torch.stack([n.float().to(device) for n in norms]).tolist()
        history["grad_norm"].extend(norms_host)
        history["step_loss"].extend(torch.stack(losses).tolist())
        skipped = sum(not math.isfinite(n) for n in norms_host) if scaler is not None else 0
        history["skipped_steps"].append(skipped)
        history["epoch"].append(epoch)
        train_loss = total_loss.item() / count
        history["train_loss"].append(train_loss)
        history["train_accuracy"].append(correct.item() / count if classification else math.nan)
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, device)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            bar.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val['loss']:.4f}")
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step(history["val_loss"][-1]) if plateau else scheduler.step()
        if early:
            if history["val_loss"][-1] < best_loss:
                best_loss, best_epoch = history["val_loss"][-1], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif patience is not None and epoch - best_epoch >= patience:
                break
    if early:
        history["best_epoch"] = [best_epoch]
        if restore_best and best_state is not None:
            model.load_state_dict(best_state)
    return history


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
    _checks.instance("path", path, (str, os.PathLike), "a str or os.PathLike")
    _checks.module("model", model)
    _checks.optimizer("optimizer", optimizer, allow_none=True)
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
