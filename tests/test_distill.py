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
    train_student,
)


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
