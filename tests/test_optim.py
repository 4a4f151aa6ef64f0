"""course_lib.optim against torch.optim (SGD / Adam / AdamW, foreach=False) and hand formulas."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from course_lib import optim

TOL = 1e-6  # max abs difference allowed after 200 steps (float32)
STEPS = 200


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is faster, and robust when other jobs share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- models and a training loop that drives two optimizers with the same data ---------------


def make_model(shape: str, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, nn.Module]:
    """A small model, its data and its loss: three parameter layouts (2-D, 1-D, 4-D tensors)."""
    g = torch.Generator().manual_seed(1000 + seed)
    torch.manual_seed(seed)
    if shape == "linear":
        model = nn.Linear(7, 3)
        X, y, loss = torch.randn(64, 7, generator=g), torch.randn(64, 3, generator=g), nn.MSELoss()
    elif shape == "mlp":
        model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 16), nn.ReLU(),
                              nn.Linear(16, 4))
        X = torch.randn(64, 10, generator=g)
        y = torch.randint(0, 4, (64,), generator=g)
        loss = nn.CrossEntropyLoss()
    elif shape == "cnn":
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                              nn.Linear(4 * 6 * 6, 5))
        X = torch.randn(32, 1, 6, 6, generator=g)
        y = torch.randint(0, 5, (32,), generator=g)
        loss = nn.CrossEntropyLoss()
    else:
        raise AssertionError(shape)
    return model, X, y, loss


def train(model, X, y, loss_fn, optimizer, steps: int, seed: int, batch: int = 16) -> None:
    """``steps`` minibatch steps; the batch sequence depends only on ``seed``."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(X), (batch,), generator=g)
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()


def max_abs_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def compare(shape, seed, ours, theirs, steps=STEPS) -> float:
    model, X, y, loss_fn = make_model(shape, seed)
    twin = copy.deepcopy(model)
    train(model, X, y, loss_fn, ours(model.parameters()), steps, seed)
    train(twin, X, y, loss_fn, theirs(twin.parameters()), steps, seed)
    moved = max_abs_diff(model, make_model(shape, seed)[0])
    assert moved > 1e-3, "the parameters must actually move, or the comparison proves nothing"
    return max_abs_diff(model, twin)


def hyper_id(hyper: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in hyper.items()) or "defaults"


SHAPES = ["linear", "mlp", "cnn"]  # 2-D, 1-D and 4-D parameters: every code path of step()
SEED = 0  # more seeds run the same code paths on other numbers: they would add time, not cover


# --- equivalence with torch.optim -----------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lr", [0.01, 0.1])
def test_gd_equals_torch_sgd_without_momentum(shape, lr):
    diff = compare(
        shape, SEED,
        lambda p: optim.GD(p, lr=lr),
        lambda p: torch.optim.SGD(p, lr=lr, foreach=False),
    )
    assert diff <= TOL


SGD_GRID = [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.02, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, dampening=0.5),
    dict(lr=0.05, weight_decay=1e-2),
    dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-3),
    dict(lr=0.03, momentum=0.99, dampening=0.1, weight_decay=1e-3),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hyper", SGD_GRID, ids=hyper_id)
def test_sgd_equals_torch_sgd(shape, hyper):
    diff = compare(
        shape, SEED,
        lambda p: optim.SGD(p, **hyper),
        lambda p: torch.optim.SGD(p, **hyper, foreach=False),
    )
    assert diff <= TOL


ADAM_GRID = [
    dict(),
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=5e-3, weight_decay=1e-2),
    dict(lr=5e-3, amsgrad=True),
    dict(lr=5e-3, weight_decay=1e-2, amsgrad=True),
    dict(lr=5e-3, betas=(0.0, 0.9)),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hyper", ADAM_GRID, ids=hyper_id)
def test_adam_equals_torch_adam(shape, hyper):
    diff = compare(
        shape, SEED,
        lambda p: optim.Adam(p, **hyper),
        lambda p: torch.optim.Adam(p, **hyper, foreach=False),
    )
    assert diff <= TOL


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hyper", ADAM_GRID, ids=hyper_id)
def test_foreach_adam_equals_torch_adam(shape, hyper):
    """The ``foreach=True`` path (lists of tensors) against the same reference."""
    diff = compare(
        shape, SEED,
        lambda p: optim.Adam(p, **hyper, foreach=True),
        lambda p: torch.optim.Adam(p, **hyper, foreach=False),
    )
    assert diff <= TOL


ADAMW_GRID = [
    dict(lr=1e-2, weight_decay=1e-2),
    dict(lr=5e-3, weight_decay=0.1, amsgrad=True),
    dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
]


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hyper", ADAMW_GRID, ids=hyper_id)
def test_decoupled_adam_equals_torch_adamw(shape, hyper, foreach):
    diff = compare(
        shape, SEED,
        lambda p: optim.Adam(p, **hyper, decoupled_weight_decay=True, foreach=foreach),
        lambda p: torch.optim.AdamW(p, **hyper, foreach=False),
    )
    assert diff <= TOL


def test_adam_and_adamw_differ_when_weight_decay_is_on():
    """Coupled (L2) and decoupled decay are different algorithms: the check above is not vacuous."""
    diff = compare(
        "mlp", 0,
        lambda p: optim.Adam(p, lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, foreach=False),
    )
    assert diff > 1e-3


def test_foreach_adam_equals_torch_foreach_path():
    diff = compare(
        "mlp", 3,
        lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-3, foreach=True),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3, foreach=True),
    )
    assert diff <= TOL


# --- hand-computed steps --------------------------------------------------------------------


def _param(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_gd_one_step_by_hand():
    theta = _param([1.0, -2.0])
    opt = optim.GD([theta], lr=0.1)
    theta.grad = torch.tensor([0.5, 4.0], dtype=torch.float64)
    opt.step()
    assert theta.tolist() == pytest.approx([1.0 - 0.05, -2.0 - 0.4], abs=1e-15)


def test_sgd_momentum_two_steps_by_hand():
    theta = _param([1.0])
    opt = optim.SGD([theta], lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.2)
    theta.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    # g = 2 + 0.2*1 = 2.2 ; b1 = g = 2.2 ; theta = 1 - 0.1*2.2 = 0.78
    assert theta.item() == pytest.approx(0.78, abs=1e-15)
    theta.grad = torch.tensor([-1.0], dtype=torch.float64)
    opt.step()
    # g = -1 + 0.2*0.78 = -0.844 ; b2 = 0.9*2.2 + 0.5*(-0.844) = 1.558 ; theta = 0.78 - 0.1558
    assert theta.item() == pytest.approx(0.78 - 0.1 * 1.558, abs=1e-15)


def test_nesterov_one_step_by_hand():
    theta = _param([0.0])
    opt = optim.SGD([theta], lr=0.5, momentum=0.9, nesterov=True)
    theta.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    # b1 = g = 1 ; d = g + mu*b1 = 1.9 ; theta = -0.95
    assert theta.item() == pytest.approx(-0.95, abs=1e-15)


def test_adam_first_two_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    theta = _param([1.0, -3.0])
    opt = optim.Adam([theta], lr=lr, betas=(b1, b2), eps=eps)
    g1 = [0.2, -5.0]
    theta.grad = torch.tensor(g1, dtype=torch.float64)
    opt.step()
    # step 1: m̂ = g, v̂ = g², so the update is -lr * g / (|g| + eps) ≈ -lr * sign(g)
    expected1 = [t - lr * g / (abs(g) + eps) for t, g in zip([1.0, -3.0], g1)]
    assert theta.tolist() == pytest.approx(expected1, abs=1e-14)
    g2 = [-0.1, -1.0]
    theta.grad = torch.tensor(g2, dtype=torch.float64)
    opt.step()
    expected2 = []
    for t, ga, gb in zip(expected1, g1, g2):
        m = b1 * (1 - b1) * ga + (1 - b1) * gb
        v = b2 * (1 - b2) * ga**2 + (1 - b2) * gb**2
        m_hat, v_hat = m / (1 - b1**2), v / (1 - b2**2)
        expected2.append(t - lr * m_hat / (math.sqrt(v_hat) + eps))
    assert theta.tolist() == pytest.approx(expected2, abs=1e-14)


def test_adamw_one_step_by_hand():
    lr, wd = 0.1, 0.5
    theta = _param([2.0])
    opt = optim.Adam([theta], lr=lr, weight_decay=wd, decoupled_weight_decay=True)
    theta.grad = torch.tensor([3.0], dtype=torch.float64)
    opt.step()
    # decay first: 2 * (1 - 0.05) = 1.9 ; then the Adam step ≈ -lr * sign(g)
    assert theta.item() == pytest.approx(1.9 - lr * 3.0 / (3.0 + 1e-8), abs=1e-14)


def test_params_without_grad_are_left_alone():
    a, b = _param([1.0]), _param([2.0])
    for opt in (optim.GD([a, b], lr=0.1), optim.SGD([a, b], lr=0.1, momentum=0.9),
                optim.Adam([a, b], lr=0.1), optim.Adam([a, b], lr=0.1, foreach=True)):
        a.grad, b.grad = torch.tensor([1.0], dtype=torch.float64), None
        before = b.item()
        opt.step()
        assert b.item() == before
        assert len(opt.state[b]) == 0


def test_closure_is_called_and_its_loss_returned():
    theta = _param([3.0])
    opt = optim.Adam([theta], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (theta**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(9.0)
    assert theta.item() == pytest.approx(2.9, abs=1e-7)


# --- checkpoints ----------------------------------------------------------------------------


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: optim.Adam(p, lr=1e-2, amsgrad=True),
        lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-2, decoupled_weight_decay=True),
        lambda p: optim.Adam(p, lr=1e-2, foreach=True),
    ],
    ids=["sgd-nesterov", "adam-amsgrad", "adamw", "adam-foreach"],
)
def test_resuming_from_a_checkpoint_continues_the_identical_trajectory(make):
    model, X, y, loss_fn = make_model("mlp", 0)
    opt = make(model.parameters())
    train(model, X, y, loss_fn, opt, 50, seed=1)
    checkpoint = _roundtrip({"model": model.state_dict(), "optim": opt.state_dict()})
    train(model, X, y, loss_fn, opt, 50, seed=2)  # the uninterrupted run

    resumed = make_model("mlp", 5)[0]  # different initial weights: all must come from the file
    resumed.load_state_dict(checkpoint["model"])
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(checkpoint["optim"])
    train(resumed, X, y, loss_fn, opt2, 50, seed=2)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_a_torch_adam_checkpoint_loads_into_course_adam():
    model, X, y, loss_fn = make_model("mlp", 0)
    theirs = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=False)
    train(model, X, y, loss_fn, theirs, 30, seed=1)
    twin = copy.deepcopy(model)
    ours = optim.Adam(twin.parameters(), lr=1e-2)
    ours.load_state_dict(_roundtrip(theirs.state_dict()))
    train(model, X, y, loss_fn, theirs, 30, seed=2)
    train(twin, X, y, loss_fn, ours, 30, seed=2)
    assert max_abs_diff(model, twin) <= TOL


# --- 2-D trajectories -----------------------------------------------------------------------


def test_gd_on_the_quadratic_follows_the_closed_form():
    a, b, lr, steps = 1.0, 10.0, 0.15, 30
    traj = optim.optimize_2d(
        lambda x, y: optim.quadratic(x, y, a, b), (2.0, 1.0), lambda p: optim.GD(p, lr=lr), steps
    )
    assert traj.points.shape == (steps + 1, 2)
    t = torch.arange(steps + 1, dtype=torch.float64)
    expected = torch.stack([2.0 * (1 - lr * a) ** t, 1.0 * (1 - lr * b) ** t], dim=1)
    torch.testing.assert_close(traj.points, expected, rtol=1e-12, atol=1e-12)
    x, y = expected[:, 0], expected[:, 1]
    torch.testing.assert_close(traj.values, 0.5 * (a * x**2 + b * y**2))


def test_gd_above_two_over_l_diverges_and_stops_early():
    traj = optim.optimize_2d(optim.quadratic, (1.0, 1.0), lambda p: optim.GD(p, lr=0.25), 5000)
    assert len(traj.points) < 5001  # stopped when the point became non-finite
    assert torch.isfinite(traj.points).all()
    assert traj.values[-1] > 1e100


def test_rosenbrock_minimum_and_gradient():
    assert optim.rosenbrock(torch.tensor(1.0), torch.tensor(1.0)).item() == 0.0
    x = torch.tensor(-1.0, requires_grad=True)
    y = torch.tensor(2.0, requires_grad=True)
    optim.rosenbrock(x, y).backward()
    # df/dx = -2(1 - x) - 400 x (y - x²) = -4 + 400 = 396 ; df/dy = 200 (y - x²) = 200
    assert (x.grad.item(), y.grad.item()) == (396.0, 200.0)


def test_gradient_noise_is_seeded_and_changes_the_path():
    run = lambda seed, noise: optim.optimize_2d(  # noqa: E731
        optim.quadratic, (1.0, 1.0), lambda p: optim.GD(p, lr=0.05), 20, noise, seed
    ).points
    assert torch.equal(run(0, 0.5), run(0, 0.5))
    assert not torch.equal(run(0, 0.5), run(1, 0.5))
    assert not torch.equal(run(0, 0.5), run(0, 0.0))
