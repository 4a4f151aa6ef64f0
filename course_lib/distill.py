"""Knowledge distillation (知识蒸馏): a small student learns from a large teacher (chapter 3.2).

Hinton, Vinyals & Dean (2015): soften both models' outputs with a temperature ``T``,

    p_i(T) = exp(z_i / T) / Σ_j exp(z_j / T),

and train the student on

    L = α · T² · KL(p^teacher(T) ‖ p^student(T)) + (1 − α) · CE(student logits, y).

The soft targets ``p^teacher(T)`` say how much the teacher thinks a "3" looks like an "8":
far more information per example than a one-hot label. The ``T²`` keeps the soft term's
gradients the same size as ``T`` changes (they scale as ``1 / T²``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.std import tqdm  # plain text bar: no widget warning in notebooks

from course_lib.device import select_device
from course_lib.train import History, default_progress, evaluate


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number > 0, got {type(temperature).__name__}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _check_logits(name: str, logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    return logits


def softmax_with_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(z / T)`` over the last dimension (chapter 3.2): ``T = 1`` is the usual
    softmax, ``T > 1`` flattens the distribution, ``T → 0`` approaches a one-hot argmax."""
    temperature = _check_temperature(temperature)
    _check_logits("logits", logits)
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"logits must have a non-empty last dimension (classes), got {tuple(logits.shape)}"
        )
    return torch.softmax(logits / temperature, dim=-1)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al.'s loss, averaged over the batch (chapter 3.2):

    ``α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)``

    with ``KL(p ‖ q) = Σ_i p_i (log p_i − log q_i)``. ``teacher_logits`` are treated as
    constants (detached). ``targets`` (class indices) may be ``None`` only when ``alpha = 1``.
    """
    temperature = _check_temperature(temperature)
    alpha = _check_alpha(alpha)
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    if student_logits.ndim != 2 or 0 in student_logits.shape:
        raise ValueError(
            "student_logits must have shape (batch, classes) with batch, classes >= 1, "
            f"got {tuple(student_logits.shape)}"
        )
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits must have the shape of student_logits {tuple(student_logits.shape)} "
            f"(teacher and student must predict the same classes), "
            f"got {tuple(teacher_logits.shape)}"
        )
    if targets is None:
        if alpha != 1.0:
            raise ValueError(f"targets must be a tensor of class indices unless alpha = 1, "
                             f"got None with alpha = {alpha}")  # fmt: skip
    else:
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a torch.Tensor or None, got {type(targets).__name__}")
        if targets.shape != student_logits.shape[:1]:
            raise ValueError(
                f"targets must have shape ({student_logits.shape[0]},), got {tuple(targets.shape)}"
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(
                f"targets must be an integer tensor of class indices, got dtype {targets.dtype}"
            )
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    loss = alpha * temperature**2 * soft
    if alpha < 1.0:
        loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits, targets)
    return loss


class Ensemble(nn.Module):
    """A teacher made of several models: the mean of their logits (chapter 3.2)."""

    def __init__(self, models: Iterable[nn.Module]) -> None:
        super().__init__()
        if not isinstance(models, Iterable):
            raise TypeError(
                f"models must be an iterable of nn.Module, got {type(models).__name__}"
            )
        models = list(models)
        for model in models:
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"models must hold only nn.Module instances, got {type(model).__name__}"
                )
        self.members = nn.ModuleList(models)
        if len(self.members) == 0:
            raise ValueError("models must hold at least one nn.Module, got none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def train_student(
    student: nn.Module,
    teacher: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    temperature: float = 4.0,
    alpha: float = 0.9,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``student`` against a frozen ``teacher`` with :func:`distillation_loss`
    (chapter 3.2). Returns the same per-epoch history as :func:`course_lib.train.fit`
    (the training loss is the distillation loss; validation loss is cross-entropy).

    The teacher runs in eval mode under ``torch.no_grad()`` (no dropout noise, no graph, its
    parameters never change); its train/eval mode is restored at the end.
    """
    for name, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if loader is None and name == "val_loader":
            continue
        if not hasattr(loader, "__iter__"):
            raise TypeError(
                f"{name} must be an iterable of (inputs, targets) batches, "
                f"got {type(loader).__name__}"
            )
    temperature, alpha = _check_temperature(temperature), _check_alpha(alpha)
    device = select_device(device)
    student.to(device)
    teacher.to(device)
    teacher_was_training = teacher.training
    teacher.eval()
    progress = default_progress() if progress is None else progress
    history: History = {
        "epoch": [], "train_loss": [], "train_accuracy": [], "val_loss": [], "val_accuracy": []
    }
    try:
        for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False):
            student.train()
            total, correct, count = 0.0, 0, 0
            for inputs, targets in train_loader:
                inputs, targets = inputs.to(device), targets.to(device)
                with torch.no_grad():
                    teacher_logits = teacher(inputs)
                optimizer.zero_grad()
                logits = student(inputs)
                loss = distillation_loss(logits, teacher_logits, targets, temperature, alpha)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(targets)
                correct += (logits.argmax(dim=1) == targets).sum().item()
                count += len(targets)
            if count == 0:
                raise ValueError("train_loader must yield at least one batch")
            history["epoch"].append(epoch)
            history["train_loss"].append(total / count)
            history["train_accuracy"].append(correct / count)
            if val_loader is not None:
                val = evaluate(student, val_loader, F.cross_entropy, device)
                history["val_loss"].append(val["loss"])
                history["val_accuracy"].append(val["accuracy"])
    finally:
        teacher.train(teacher_was_training)
    return history
