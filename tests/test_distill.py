"""course_lib.distill against hand-written formulas (Hinton et al. 2015)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib.distill import (
    Ensemble,
    distillation_loss,
    softmax_with_temperature,
    stacked_distillation_loss,
    train_student,
    train_students,
)
from course_lib.models import MLP, StackedMLP


def _hand_softmax(row, T):
    exps = [math.exp(z / T) for z in row]
    total = sum(exps)
    return [e / total for e in exps]


def _hand_loss(s, t, y, T, alpha):
    """Loops and math.log only: α T² mean_n KL(p_t ‖ p_s) + (1 − α) mean_n −log softmax(s)_y."""
    kl, ce = 0.0, 0.0
    for s_row, t_row, label in zip(s.tolist(), t.tolist(), y.tolist(), strict=True):
        p, q = _hand_softmax(t_row, T), _hand_softmax(s_row, T)
        kl += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
        ce -= math.log(_hand_softmax(s_row, 1.0)[label])
    n = len(y)
    return alpha * T**2 * kl / n + (1 - alpha) * ce / n


@pytest.mark.parametrize("T", [0.5, 1.0, 3.0, 10.0])
def test_softmax_with_temperature_matches_hand_formula(T):
    torch.manual_seed(0)
    z = torch.randn(4, 6, dtype=torch.float64)
    got = softmax_with_temperature(z, T)
    want = torch.tensor([_hand_softmax(row, T) for row in z.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_temperature_flattens_and_sharpens():
    z = torch.tensor([[3.0, 1.0, 0.0]])
    entropy = lambda p: -(p * p.log()).sum().item()  # noqa: E731
    h = [entropy(softmax_with_temperature(z, T)) for T in (0.5, 1.0, 4.0, 100.0)]
    assert h == sorted(h)
    assert h[-1] == pytest.approx(math.log(3), abs=1e-3)


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 1.0), (8.0, 0.0)])
def test_distillation_loss_matches_hand_formula(T, alpha):
    torch.manual_seed(1)
    s, t = torch.randn(5, 4, dtype=torch.float64), 3 * torch.randn(5, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    got = distillation_loss(s, t, y, T, alpha)
    assert got.item() == pytest.approx(_hand_loss(s, t, y, T, alpha), rel=1e-10)


def test_alpha_zero_is_cross_entropy_and_identical_logits_give_zero_soft_loss():
    s = torch.randn(6, 3)
    y = torch.randint(0, 3, (6,))
    torch.testing.assert_close(distillation_loss(s, 5 * s, y, 2.0, 0.0),
                               nn.functional.cross_entropy(s, y))
    assert distillation_loss(s, s.clone(), None, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_receives_no_gradient():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    distillation_loss(s, t, torch.tensor([0, 1, 2, 0]), 2.0, 0.7).backward()
    assert s.grad is not None and t.grad is None


def test_soft_gradient_matches_hinton_formula():
    # dL/ds_i = α T² · (q_i − p_i) / T / N  with q, p the softened student / teacher outputs
    T, alpha = 3.0, 1.0
    s = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, dtype=torch.float64)
    distillation_loss(s, t, None, T, alpha).backward()
    q, p = softmax_with_temperature(s.detach(), T), softmax_with_temperature(t, T)
    torch.testing.assert_close(s.grad, alpha * T * (q - p) / 2)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"teacher_logits": torch.randn(4, 5)}, "teacher_logits"),
        ({"targets": torch.zeros(3, dtype=torch.long)}, "targets"),
        ({"targets": None}, "targets"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    args = {
        "student_logits": torch.randn(4, 3),
        "teacher_logits": torch.randn(4, 3),
        "targets": torch.zeros(4, dtype=torch.long),
        "temperature": 2.0,
        "alpha": 0.5,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        distillation_loss(**args)


def test_softmax_with_bad_temperature_raises():
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature(torch.randn(2, 3), 0)


def _data(n=64, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, :k].argmax(dim=1)).long()
    return DataLoader(TensorDataset(X, y), batch_size=16)


class _ModeSpy(nn.Module):
    """Wraps the teacher and records, at every call, its mode and whether autograd is on."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.net(x)


def test_train_student_keeps_teacher_frozen_and_in_eval_mode():
    torch.manual_seed(0)
    teacher = _ModeSpy(nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 3)))
    teacher.train()
    before = [p.clone() for p in teacher.parameters()]
    student = nn.Linear(8, 3)
    student_before = student.weight.clone()
    optimizer = torch.optim.Adam(list(student.parameters()), lr=1e-2)
    loader = _data()
    history = train_student(student, teacher, loader, loader, optimizer, epochs=3,
                            temperature=2.0, alpha=0.5, device="cpu")
    assert teacher.calls and all(mode == (False, False) for mode in teacher.calls)
    assert teacher.training  # mode restored afterwards
    for p, q in zip(teacher.parameters(), before, strict=True):
        assert torch.equal(p, q) and p.grad is None
    assert not torch.equal(student.weight, student_before)
    assert history["epoch"] == [1, 2, 3] and len(history["val_accuracy"]) == 3


def test_train_student_with_alpha_zero_equals_plain_cross_entropy_training():
    loader = _data(seed=3)
    results = []
    for use_teacher in (True, False):
        torch.manual_seed(0)
        student = nn.Linear(8, 3)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
        if use_teacher:
            train_student(student, nn.Linear(8, 3), loader, None, optimizer, epochs=2,
                          temperature=3.0, alpha=0.0, device="cpu")
        else:
            for _ in range(2):
                for x, y in loader:
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(student(x), y).backward()
                    optimizer.step()
        results.append(student.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1])


def test_ensemble_averages_logits():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(2, 4)
    torch.testing.assert_close(Ensemble([a, b])(x), (a(x) + b(x)) / 2)
    with pytest.raises(ValueError, match="models"):
        Ensemble([])


def test_train_student_rejects_bad_arguments():
    loader = _data()
    student = nn.Linear(8, 3)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="temperature"):
        train_student(student, nn.Linear(8, 3), loader, None, opt, 1, temperature=0.0)
    with pytest.raises(ValueError, match="epochs"):
        train_student(student, nn.Linear(8, 3), loader, None, opt, 0)


# --- K students at once ----------------------------------------------------------------------


def test_stacked_distillation_loss_is_distillation_loss_per_student_with_smoothing():
    torch.manual_seed(4)
    s, t = torch.randn(3, 6, 5, dtype=torch.float64), 2 * torch.randn(3, 6, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (3, 6))
    T, alpha = torch.tensor([1.0, 4.0, 2.0]), torch.tensor([0.9, 1.0, 0.0])
    eps = torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64)
    got = stacked_distillation_loss(s, t, y, T, alpha, eps)
    for k in range(2):
        want = distillation_loss(s[k], t[k], y[k], float(T[k]), float(alpha[k]))
        assert got[k].item() == pytest.approx(want.item(), rel=1e-10)
    smoothed = nn.functional.cross_entropy(s[2], y[2], label_smoothing=0.1)
    assert got[2].item() == pytest.approx(smoothed.item(), rel=1e-10)


def _students(seeds, hidden=(6,)):
    nets = []
    for seed in seeds:
        torch.manual_seed(seed)
        nets.append(MLP(in_features=8, hidden=hidden, num_classes=3))
    return nets


def test_train_students_follows_each_students_own_train_student_run():
    torch.manual_seed(0)
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    teacher = MLP(in_features=8, hidden=(16, 12), num_classes=3)
    temperatures, alphas = [1.0, 4.0], [0.5, 0.9]
    stack = StackedMLP(_students([0, 1]))
    train_students(stack, teacher, x, y, seeds=[0, 1], epochs=5, lr=1e-2,
                   temperature=temperatures, alpha=alphas)
    for k, student in enumerate(_students([0, 1])):
        optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
        train_student(student, teacher, [(x, y)], None, optimizer, 5,
                      temperature=temperatures[k], alpha=alphas[k], device="cpu")
        x_test = torch.randn(5, 8)
        torch.testing.assert_close(stack.unstack(k)(x_test), student(x_test),
                                   rtol=1e-5, atol=1e-6)


def test_train_students_hint_and_unlabeled_transfer_set():
    torch.manual_seed(1)
    x, y = torch.randn(2, 30, 8), torch.randint(0, 3, (2, 30))
    teacher = MLP(in_features=8, hidden=(16, 12), num_classes=3)
    plain, hinted = StackedMLP(_students([0, 1])), StackedMLP(_students([0, 1]))
    train_students(plain, teacher, x, y, seeds=[0, 1], epochs=3, per_model=True)
    train_students(hinted, teacher, x, y, seeds=[0, 1], epochs=3, per_model=True,
                   hint_weight=[0.0, 1.0])
    # beta = 0: the same student; beta > 0: a different one (the hint pulls its hidden layer)
    torch.testing.assert_close(hinted.weights[0][0], plain.weights[0][0])
    assert not torch.allclose(hinted.weights[0][1], plain.weights[0][1])
    unlabeled = StackedMLP(_students([2]))
    loss = train_students(unlabeled, teacher, x[0], None, seeds=[2], epochs=2, alpha=1.0)
    assert loss.shape == (1,) and bool(torch.isfinite(loss).all())
