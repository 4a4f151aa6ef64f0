"""Knowledge distillation (知识蒸馏): a small student learns from a large teacher (chapter 3.2).

Hinton, Vinyals & Dean (2015): soften both models' outputs with a temperature ``T``,

    p_i(T) = exp(z_i / T) / Σ_j exp(z_j / T),

and train the student on

    L = α · T² · KL(p^teacher(T) ‖ p^student(T)) + (1 − α) · CE(student logits, y).

The soft targets ``p^teacher(T)`` say how much the teacher thinks a "3" looks like an "8":
far more information per example than a one-hot label. The ``T²`` keeps the soft term's
gradients the same size as ``T`` changes (they scale as ``1 / T²``).

:func:`train_students` trains K small MLP students at once (a
:class:`course_lib.models.StackedMLP`), each with its own temperature, ``α``, label smoothing
and hint-loss weight — the hint loss (Romero et al. 2015, FitNets) matches a student's hidden
layer, through a learned linear regressor, to the teacher's (here with the cosine distance,
as PyTorch's distillation tutorial does). Chapter 3.2 runs every arm over seeds that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import _checks
from course_lib.device import select_device
from course_lib.models import StackedMLP, fit_stacked
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


# --- K students at once (chapter 3.2: arms × seeds for the cost of one run) -----------------


def _per_student(name: str, value, k: int, check) -> torch.Tensor:
    """A hyper-parameter given once or once per student, as a float tensor ``(k,)``."""
    if isinstance(value, (list, tuple)):
        if len(value) != k:
            raise ValueError(f"{name} must be a number or a list of {k} numbers (one per "
                             f"student), got {len(value)} values")  # fmt: skip
        return torch.tensor([check(f"{name}[{i}]", v) for i, v in enumerate(value)])
    return torch.full((k,), check(name, value))


def stacked_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor | None,
    temperature: torch.Tensor,
    alpha: torch.Tensor,
    smoothing: torch.Tensor,
) -> torch.Tensor:
    """:func:`distillation_loss` of K students at once, one value per student ``(K,)``
    (chapter 3.2). Logits ``(K, B, C)``, ``targets`` ``(K, B)``; ``temperature``, ``alpha``
    and ``smoothing`` ``(K,)``. The hard term is the label-smoothed cross-entropy of
    ``torch.nn.functional.cross_entropy(label_smoothing=ε)``,
    ``−(1 − ε) log q_y − (ε / C) Σ_c log q_c`` (``ε = 0``: plain cross-entropy)."""
    k, _, c = student_logits.shape
    T = temperature.to(student_logits).view(k, 1, 1)
    loss = torch.zeros(k, dtype=student_logits.dtype, device=student_logits.device)
    a = alpha.to(loss)
    if bool((a > 0).any()):
        log_q = F.log_softmax(student_logits / T, dim=-1)
        log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1)  # (K,): batch mean of KL(p ‖ q)
        loss = loss + a * T.view(k) ** 2 * kl
    if bool((a < 1).any()):
        log_q1 = F.log_softmax(student_logits, dim=-1)
        nll = -log_q1.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (K, B)
        eps = smoothing.to(loss).view(k, 1)
        hard = ((1 - eps) * nll - eps / c * log_q1.sum(-1)).mean(-1)
        loss = loss + (1 - a) * hard
    return loss


def train_students(
    students: StackedMLP,
    teacher: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    seeds: Sequence[int],
    epochs: int,
    lr: float = 1e-2,
    batch_size: int | None = None,
    temperature=4.0,
    alpha=0.9,
    smoothing=0.0,
    hint_weight=0.0,
    per_model: bool = False,
) -> torch.Tensor:
    """Train the K students of ``students`` at once against a frozen ``teacher`` (chapter 3.2).

    Student ``k`` minimises, on its own batches (``models.fit_stacked``, Adam with ``lr``;
    ``batch_size=None``: full batch),

    ``α_k T_k² KL(p^teacher(T_k) ‖ p^student(T_k)) + (1 − α_k) CE_{ε_k}(z, y)
    + β_k (1 − cos(h_s R_k, h_t))``

    — Hinton et al.'s loss (:func:`distillation_loss`) with a label-smoothed hard term
    (``smoothing`` = ε; ``α = 0, ε > 0`` is the label-smoothing baseline) and a FitNets hint
    term (``hint_weight`` = β): the student's last hidden layer ``h_s`` mapped by its own
    learned linear regressor ``R_k`` to the width of the teacher's last hidden layer ``h_t``,
    compared by cosine similarity, batch mean. Each of ``temperature``, ``alpha``,
    ``smoothing``, ``hint_weight`` is one number or one per student. ``targets`` may be
    ``None`` when every ``α = 1`` (unlabeled data: only the teacher's soft targets). ``inputs``
    ``(n, ...)`` are shared, or ``(K, n, ...)`` with ``per_model=True`` (``targets`` ``(K, n)``).
    The teacher (an MLP, ``nn.Sequential``) runs once, in eval mode, without gradients.
    Returns the last epoch's mean loss per student, ``(K,)``.
    """
    _checks.instance("students", students, StackedMLP)
    _checks.module("teacher", teacher)
    k = students.k
    T = _per_student("temperature", temperature, k, _checks.positive)
    a = _per_student("alpha", alpha, k, lambda n, v: _checks.fraction(n, v, closed=True))
    eps = _per_student("smoothing", smoothing, k,
                       lambda n, v: _checks.real(n, v, 0, 1, high_open=True))  # fmt: skip
    beta = _per_student("hint_weight", hint_weight, k, lambda n, v: _checks.real(n, v, 0))
    per_model = _checks.flag("per_model", per_model)
    _checks.tensor("inputs", inputs, floating=True, nonempty=True)
    if targets is None and bool((a < 1).any()):
        raise ValueError(f"targets must be a tensor of class indices unless every alpha = 1, "
                         f"got None with alpha = {a.tolist()}")  # fmt: skip
    n = inputs.shape[1] if per_model else inputs.shape[0]
    device = students.weights[0].device
    flat = inputs.reshape(-1, *inputs.shape[2:]) if per_model else inputs
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            teacher_stack = StackedMLP([teacher]).to(device)
            t_logits, t_hidden = teacher_stack(flat.to(device).unsqueeze(0), return_hidden=True)
    finally:
        teacher.train(was_training)
    t_logits, t_hidden = t_logits[0], t_hidden[-1][0]
    if per_model:
        t_logits, t_hidden = t_logits.view(k, n, -1), t_hidden.view(k, n, -1)
    classes = students.weights[-1].shape[1]
    if t_logits.shape[-1] != classes:
        raise ValueError(f"teacher must predict as many classes as the students ({classes}), "
                         f"got {t_logits.shape[-1]}")  # fmt: skip
    labels = None if targets is None else targets.to(device)
    if labels is not None:
        _checks.tensor("targets", labels)
        if labels.is_floating_point() or labels.shape != inputs.shape[:(2 if per_model else 1)]:
            raise ValueError(f"targets must hold one class index per input, shape "
                             f"{tuple(inputs.shape[:(2 if per_model else 1)])}, got "
                             f"{tuple(labels.shape)} of dtype {labels.dtype}")  # fmt: skip
    width_s = students.weights[-1].shape[2]
    generator = torch.Generator().manual_seed(int(seeds[0]) if len(seeds) else 0)
    regressor = (torch.randn(k, width_s, t_hidden.shape[-1], generator=generator)
                 / width_s**0.5).to(device).requires_grad_()  # fmt: skip
    use_hint = bool((beta > 0).any())
    rows = torch.arange(k, device=device)[:, None]
    T, a, eps, beta = (v.to(device) for v in (T, a, eps, beta))

    def loss_fn(model, x, index):
        logits, hidden = model(x, return_hidden=True)
        pick = (lambda t: t[rows, index]) if per_model else (lambda t: t[index])
        y = None if labels is None else pick(labels)
        loss = stacked_distillation_loss(logits, pick(t_logits), y, T, a, eps)
        if use_hint:
            mapped = torch.bmm(hidden[-1], regressor)  # (K, B, teacher width)
            cos = F.cosine_similarity(mapped, pick(t_hidden), dim=-1, eps=1e-8)
            loss = loss + beta * (1 - cos).mean(-1)
        return loss

    index = torch.arange(n, device=device)
    index = index.expand(k, n) if per_model else index
    return fit_stacked(students, inputs, index, seeds=seeds, epochs=epochs, lr=lr,
                       batch_size=n if batch_size is None else batch_size, loss_fn=loss_fn,
                       extra_params=[regressor] if use_hint else (),
                       per_model=per_model)  # fmt: skip
