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

from course_lib import _checks
from course_lib.device import select_device
from course_lib.train import History, fit


def _check_temperature(temperature: float) -> float:
    return _checks.positive("temperature", temperature)


def _check_alpha(alpha: float) -> float:
    return _checks.fraction("alpha", alpha, closed=True)


def _check_logits(name: str, logits) -> torch.Tensor:
    return _checks.tensor(name, logits, floating=True)


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
    **fit_options,
) -> History:
    """Train ``student`` against a frozen ``teacher`` with :func:`distillation_loss`
    (chapter 3.2): :func:`course_lib.train.fit` with a loss hook that adds the teacher's logits.
    Returns ``fit``'s history (the training loss is the distillation loss; validation loss is
    cross-entropy). ``fit_options`` (``scheduler``, ``clip_grad_norm``, ``patience``, ...) are
    passed on to ``fit``.

    The teacher runs in eval mode under ``torch.no_grad()`` (no dropout noise, no graph, its
    parameters never change); its train/eval mode is restored at the end.
    """
    _checks.module("student", student)
    _checks.module("teacher", teacher)
    temperature, alpha = _check_temperature(temperature), _check_alpha(alpha)
    teacher.to(select_device(device))
    teacher_was_training = teacher.training
    teacher.eval()

    def soft_and_hard_loss(model, inputs, targets):
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        logits = model(inputs)
        return distillation_loss(logits, teacher_logits, targets, temperature, alpha), logits

    try:
        return fit(student, train_loader, val_loader, optimizer, F.cross_entropy, epochs, device,
                   progress=progress, loss_hook=soft_and_hard_loss, **fit_options)  # fmt: skip
    finally:
        teacher.train(teacher_was_training)
