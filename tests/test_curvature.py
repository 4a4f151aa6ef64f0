"""course_lib.curvature against PyTorch's references: Hessian-vector products against the full
Hessian of torch.autograd.functional.hessian, power iteration against torch.linalg.eigvalsh,
per-example gradient variance against a plain loop, and the quadratic rates against their
closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from course_lib import curvature


def small_problem(seed=0, dtype=torch.float64, activation=nn.Tanh):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), activation(), nn.Linear(4, 3)).to(dtype)
    inputs = torch.randn(20, 3, dtype=dtype)
    targets = torch.randint(0, 3, (20,))
    return model, nn.functional.cross_entropy, inputs, targets


def full_hessian(model, loss_fn, inputs, targets):
    """The P × P Hessian by torch.autograd.functional.hessian over the flat parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta):
        params = {n: t.reshape(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
        return loss_fn(functional_call(model, params, (inputs,)), targets)

    return torch.autograd.functional.hessian(loss, flat), names, shapes, sizes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvp_equals_full_hessian_times_vector(seed):
    model, loss_fn, inputs, targets = small_problem(seed)
    H, names, shapes, sizes = full_hessian(model, loss_fn, inputs, targets)
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    vector = {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes), shapes)}
    hv = curvature.hessian_vector_product(model, loss_fn, inputs, targets, vector)
    flat = torch.cat([hv[n].reshape(-1) for n in names])
    torch.testing.assert_close(flat, H @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_power_iteration_finds_the_largest_eigenvalue(seed):
    model, loss_fn, inputs, targets = small_problem(seed)
    H, *_ = full_hessian(model, loss_fn, inputs, targets)
    expected = torch.linalg.eigvalsh(H).max().item()
    found = curvature.top_eigenvalue(model, loss_fn, inputs, targets, iters=2000, tol=1e-12)
    assert found.converged
    assert found.value == pytest.approx(expected, rel=1e-6)
    # the returned vector is a unit eigenvector: H v = λ v
    hv = curvature.hessian_vector_product(model, loss_fn, inputs, targets, found.vector)
    for name, v in found.vector.items():
        torch.testing.assert_close(hv[name], found.value * v, rtol=1e-4, atol=1e-6)


def test_power_iteration_warm_start_needs_fewer_products():
    model, loss_fn, inputs, targets = small_problem(0)
    cold = curvature.top_eigenvalue(model, loss_fn, inputs, targets, iters=2000, tol=1e-10)
    warm = curvature.top_eigenvalue(model, loss_fn, inputs, targets, iters=2000, tol=1e-10,
                                    init=cold.vector)  # fmt: skip
    assert warm.iterations < cold.iterations
    assert warm.value == pytest.approx(cold.value, rel=1e-8)


class Quadratic(nn.Module):
    """L(θ) = ½ θᵀ A θ for a fixed symmetric A: its Hessian is A."""

    def __init__(self, A):
        super().__init__()
        self.A = A
        self.theta = nn.Parameter(torch.ones(len(A), dtype=A.dtype))

    def forward(self, x):
        return 0.5 * self.theta @ self.A @ self.theta + 0 * x.sum()


def test_negative_dominant_eigenvalue_is_shifted_to_find_the_largest():
    A = torch.diag(torch.tensor([-10.0, 1.0, 3.0], dtype=torch.float64))
    model = Quadratic(A)
    x = torch.zeros(1, 1, dtype=torch.float64)
    found = curvature.top_eigenvalue(model, lambda out, t: out, x, torch.zeros(1),
                                     iters=5000, tol=1e-12)  # fmt: skip
    assert found.value == pytest.approx(3.0, rel=1e-6)


def test_gradient_noise_equals_a_loop_over_examples():
    model, loss_fn, inputs, targets = small_problem(1)
    grads = []
    for x, t in zip(inputs, targets):
        model.zero_grad()
        loss_fn(model(x[None]), t[None]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    G = torch.stack(grads)
    mean = G.mean(0)
    sigma2 = ((G - mean) ** 2).sum(1).mean().item()
    noise = curvature.gradient_noise(model, loss_fn, inputs, targets, chunk=7)
    assert noise.sigma2 == pytest.approx(sigma2, rel=1e-9)
    assert noise.grad_norm2 == pytest.approx((mean**2).sum().item(), rel=1e-9)
    assert noise.n == 20
    assert noise.noise_scale == pytest.approx(sigma2 / (mean**2).sum().item())
    assert noise.noise_to_signal(4) == pytest.approx(noise.noise_scale / 4)


def test_minibatch_variance_is_sigma2_over_b():
    """E‖g_B − ∇L‖² = σ²/B for draws with replacement (what noise_to_signal relies on): the
    minibatch gradients are means of B rows of the per-example gradients of a plain loop."""
    model, loss_fn, inputs, targets = small_problem(2)
    noise = curvature.gradient_noise(model, loss_fn, inputs, targets)
    rows = []
    for x, t in zip(inputs, targets):
        model.zero_grad()
        loss_fn(model(x[None]), t[None]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    G = torch.stack(rows)
    B = 5
    idx = torch.randint(0, len(targets), (20000, B), generator=torch.Generator().manual_seed(0))
    errors = ((G[idx].mean(1) - noise.gradient.double()) ** 2).sum(1)
    assert errors.mean().item() == pytest.approx(noise.sigma2 / B, rel=0.05)


def test_gd_on_a_quadratic_contracts_at_the_predicted_rate():
    lam = torch.tensor([1.0, 25.0], dtype=torch.float64)  # the extremes set the rate
    kappa = (lam.max() / lam.min()).item()
    lr = 2 / (lam.min() + lam.max()).item()
    theta = torch.ones(2, dtype=torch.float64)
    errors = [theta.norm().item()]
    for _ in range(60):
        theta = theta - lr * lam * theta
        errors.append(theta.norm().item())
    assert curvature.contraction(errors) == pytest.approx(curvature.gd_rate(kappa), rel=1e-6)


def test_heavy_ball_reaches_its_rate_with_polyaks_parameters():
    lam = torch.tensor([1.0, 9.0, 100.0], dtype=torch.float64)
    lr, momentum = curvature.heavy_ball_parameters(lam.min().item(), lam.max().item())
    assert momentum == pytest.approx(((10 - 1) / (10 + 1)) ** 2)
    theta = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = torch.optim.SGD([theta], lr=lr, momentum=momentum)
    errors = [theta.norm().item()]
    for _ in range(400):
        opt.zero_grad()
        (0.5 * (lam * theta**2).sum()).backward()
        opt.step()
        errors.append(theta.norm().item())
    rate = curvature.contraction(errors, skip=100)
    # the extreme eigen-directions have a double root of modulus √μ: polynomial factors t·r^t
    assert rate == pytest.approx(curvature.heavy_ball_rate(100.0), rel=0.03)
    assert rate < curvature.gd_rate(100.0)


def test_rates_closed_forms():
    assert curvature.gd_rate(1) == 0 and curvature.heavy_ball_rate(1) == 0
    assert curvature.gd_rate(9) == pytest.approx(0.8)
    assert curvature.heavy_ball_rate(9) == pytest.approx(0.5)
    assert curvature.noise_scale(2.0, 0.5) == 4.0
    assert curvature.noise_to_signal(2.0, 0.5, 8) == 0.5
    assert math.isclose(curvature.contraction([8.0, 4.0, 2.0, 1.0]), 0.5)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: curvature.gd_rate(0.5), ValueError, "kappa must be a number >= 1, got 0.5"),
        (lambda: curvature.heavy_ball_parameters(0.0, 1.0), ValueError, "lambda_min must be"),
        (lambda: curvature.heavy_ball_parameters(2.0, 1.0), ValueError, "must be a pair"),
        (lambda: curvature.contraction([1.0]), ValueError, "errors must hold at least 2"),
        (lambda: curvature.contraction([1.0, 0.0]), ValueError, "errors[1] must be a number > 0"),
        (lambda: curvature.noise_scale(1.0, 0.0), ValueError, "grad_norm2 must be a number > 0"),
        (lambda: curvature.noise_to_signal(1.0, 1.0, 0), ValueError, "batch_size must be an int"),
        (lambda: curvature.top_eigenvalue(*small_problem(), iters=0), ValueError, "iters must"),
        (lambda: curvature.top_eigenvalue("model", None, None, None), TypeError,
         "model must be a torch.nn.Module, got str"),
        (lambda: curvature.hessian_vector_product(*small_problem(), {"x": torch.ones(1)}),
         ValueError, "vector must have one tensor per parameter"),
        (lambda: curvature.gradient_noise(*small_problem()[:3], torch.zeros(3)), ValueError,
         "inputs and targets must hold as many examples"),
    ],
)
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
