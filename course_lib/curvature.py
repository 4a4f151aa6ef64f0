"""The curvature of a loss and the noise of its gradient (chapter 3.1; chapter 7 uses them).

Gradient descent on a quadratic is stable only for ``η < 2/λ_max`` and contracts the error by
``(κ − 1)/(κ + 1)`` per step; the learning rate that a real network tolerates, and the batch
size beyond which a larger batch stops paying, are the same two questions asked of its actual
loss. This module measures the quantities they need, matrix-free:

1. :func:`hessian_vector_product` — ``H v`` for the Hessian of a model's loss, by
   forward-over-reverse differentiation with ``torch.func`` (``jvp`` of ``grad``): the cost
   of about two gradients, without ever forming the ``P × P`` matrix ``H``.
2. :func:`top_eigenvalue` — ``λ_max(H)`` (the *sharpness*) by power iteration on ``v ↦ H v``,
   warm-startable so that it can follow training step by step.
3. :func:`gd_rate`, :func:`heavy_ball_rate`, :func:`heavy_ball_parameters` and
   :func:`contraction` — the convergence rates of gradient descent and heavy-ball momentum on
   a quadratic with condition number ``κ``, and the rate a run actually achieved.
4. :func:`gradient_noise` and :func:`noise_scale` — the per-example gradient variance
   ``σ² = (1/N) Σ ‖∇ℓ_i − ∇L‖²`` (per-example gradients with ``torch.func.vmap``) and the
   simple noise scale ``B_simple = σ² / ‖∇L‖²`` of McCandlish et al. (2018): the batch size at
   which the minibatch noise ``σ²/B`` equals the signal ``‖∇L‖²``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from course_lib import _checks

__all__ = [
    "GradientNoise",
    "PowerIteration",
    "contraction",
    "gd_rate",
    "gradient_noise",
    "heavy_ball_parameters",
    "heavy_ball_rate",
    "hessian_vector_product",
    "loss_function",
    "noise_scale",
    "noise_to_signal",
    "top_eigenvalue",
]

Params = dict[str, torch.Tensor]


# --- 1. Hessian-vector products ------------------------------------------------------------


@functools.cache
def _forward_mode_ready() -> None:
    """Load PyTorch's forward-mode AD decompositions once, quietly: on first use some PyTorch
    versions register them through ``torch.jit.script``, whose deprecation ``FutureWarning``
    concerns PyTorch's internals, not the caller (and would write to a notebook's stderr)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        one = torch.ones(1)
        jvp(lambda x: x * x, (one,), (one,))


def _check_data(model, loss_fn, inputs, targets) -> None:
    _checks.module("model", model)
    _checks.function("loss_fn", loss_fn, "loss_fn(outputs, targets) -> scalar tensor")
    _checks.tensor("inputs", inputs, nonempty=True)
    _checks.tensor("targets", targets, nonempty=True)
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets must hold as many examples, got {len(inputs)} "
                         f"and {len(targets)}")  # fmt: skip


def _parameters(model: nn.Module) -> Params:
    """The trainable parameters of ``model``, detached: the point at which H is taken."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model must have at least one trainable parameter, got none")
    return params


def loss_function(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> Callable[[Params], torch.Tensor]:
    """``L(θ) = loss_fn(model_θ(inputs), targets)`` as a pure function of the parameters
    ``θ`` (a dict ``name → tensor``, like ``model.named_parameters()``), through
    ``torch.func.functional_call``: the form ``torch.func.grad`` and ``jvp`` differentiate.
    Buffers (batch-norm statistics) are the model's own; use ``model.eval()`` for a loss
    that does not depend on the batch's statistics."""
    _check_data(model, loss_fn, inputs, targets)

    def loss(params: Params) -> torch.Tensor:
        return loss_fn(functional_call(model, params, (inputs,)), targets)

    return loss


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def _norm(a: Params) -> torch.Tensor:
    return torch.sqrt(_dot(a, a))


def _check_vector(vector: Mapping, params: Params) -> Params:
    _checks.instance("vector", vector, Mapping, "a dict name -> tensor shaped like the parameters")
    if set(vector) != set(params):
        raise ValueError(f"vector must have one tensor per parameter {sorted(params)}, "
                         f"got {sorted(vector)}")  # fmt: skip
    for name, p in params.items():
        v = _checks.tensor(f"vector[{name!r}]", vector[name], floating=True)
        if v.shape != p.shape:
            raise ValueError(f"vector[{name!r}] must have the shape {tuple(p.shape)} of the "
                             f"parameter, got {tuple(v.shape)}")  # fmt: skip
    return {name: vector[name].to(p) for name, p in params.items()}


def hessian_vector_product(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    vector: Mapping[str, torch.Tensor],
) -> Params:
    """``H v``, where ``H = ∇²L(θ)`` is the Hessian of ``L(θ) = loss_fn(model(inputs),
    targets)`` at the model's current parameters and ``v`` a dict shaped like
    ``model.named_parameters()`` (chapter 3.1).

    Forward-over-reverse: ``H v = d/dt ∇L(θ + t v)|_{t=0}``, the directional derivative of the
    gradient, computed as ``torch.func.jvp(torch.func.grad(L), (θ,), (v,))`` — about the cost
    of two gradient evaluations and the memory of one, never the ``P × P`` matrix. Equals
    ``torch.autograd.functional.hessian`` applied to ``v`` (``tests/test_curvature.py``).
    """
    loss = loss_function(model, loss_fn, inputs, targets)
    params = _parameters(model)
    vector = _check_vector(vector, params)
    _forward_mode_ready()
    _, hv = jvp(grad(loss), (params,), (vector,))
    return hv


# --- 2. power iteration for λ_max ------------------------------------------------------------


class PowerIteration(NamedTuple):
    """What :func:`top_eigenvalue` found: ``value`` (the eigenvalue), ``vector`` (its unit
    eigenvector, a dict shaped like the parameters: pass it back as ``init`` to follow
    training), ``iterations`` (Hessian-vector products used) and ``converged``."""

    value: float
    vector: Params
    iterations: int
    converged: bool


def _power(hvp: Callable[[Params], Params], v: Params, shift: float, iters: int,
           tol: float) -> tuple[float, Params, int, bool]:  # fmt: skip
    """Power iteration on ``v ↦ H v − shift · v``: the eigenvalue of largest magnitude of the
    shifted operator (Rayleigh quotient ``vᵀ(H − s)v`` of the unit iterate)."""
    v = {k: t / _norm(v) for k, t in v.items()}
    value = math.nan
    for i in range(1, iters + 1):
        hv = hvp(v)
        if shift:
            hv = {k: hv[k] - shift * v[k] for k in hv}
        new_value = _dot(v, hv).item()  # Rayleigh quotient vᵀ A v, ‖v‖ = 1
        norm = _norm(hv)
        if norm.item() == 0.0:  # A v = 0: v is an eigenvector for 0
            return 0.0, v, i, True
        v = {k: t / norm for k, t in hv.items()}
        if i > 1 and abs(new_value - value) <= tol * abs(new_value):
            return new_value, v, i, True
        value = new_value
    return value, v, iters, False


def top_eigenvalue(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    iters: int = 100,
    tol: float = 1e-4,
    init: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> PowerIteration:
    """``λ_max`` of the loss Hessian ``H`` at the model's parameters, by power iteration on
    Hessian-vector products (chapter 3.1: the *sharpness* that ``2/η`` is compared with).

    ``v_{k+1} = H v_k / ‖H v_k‖`` converges to the eigenvector of the eigenvalue of largest
    *magnitude*, at the rate ``|λ_2/λ_1|`` per step; the estimate is the Rayleigh quotient
    ``λ ≈ v_kᵀ H v_k``. It stops when two estimates agree to the relative ``tol`` or after
    ``iters`` products. If that eigenvalue is negative (a saddle's direction dominates), the
    iteration is run again on ``H − λ I``, whose dominant eigenvalue is ``λ_max − λ ≥ 0``, so
    the result is always the largest *algebraic* eigenvalue. ``init`` (e.g. the previous
    result's ``vector``) warm-starts the iteration; otherwise it starts from a Gaussian
    vector drawn with ``seed``. Agrees with ``torch.linalg.eigvalsh`` of the full Hessian
    (``tests/test_curvature.py``).
    """
    iters = _checks.positive_int("iters", iters)
    tol = _checks.positive("tol", tol)
    seed = _checks.seed("seed", seed)
    loss = loss_function(model, loss_fn, inputs, targets)
    params = _parameters(model)
    if init is None:
        generator = torch.Generator().manual_seed(seed)
        init = {k: torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
                for k, p in params.items()}  # fmt: skip
    v = _check_vector(init, params)
    if _norm(v).item() == 0.0:
        raise ValueError("init must be a non-zero vector, got all zeros")
    gradient = grad(loss)
    _forward_mode_ready()

    def hvp(u: Params) -> Params:
        return jvp(gradient, (params,), (u,))[1]

    value, v, used, converged = _power(hvp, v, 0.0, iters, tol)
    if value < 0:  # the dominant eigenvalue is negative: shift it to 0, find λ_max − λ
        shifted, v2, used2, converged = _power(hvp, v, value, iters, tol)
        value, v, used = shifted + value, v2, used + used2
    return PowerIteration(float(value), v, used, converged)


# --- 3. convergence rates on a quadratic -----------------------------------------------------


def _condition(name: str, kappa: float) -> float:
    return _checks.real(name, kappa, 1)


def gd_rate(kappa: float) -> float:
    """``(κ − 1)/(κ + 1)``: the factor by which gradient descent with the best constant rate
    ``η* = 2/(λ_min + λ_max)`` shrinks the distance to the minimum of a quadratic per step,
    ``κ = λ_max/λ_min`` (chapter 3.1). Both extreme eigen-directions contract by it."""
    kappa = _condition("kappa", kappa)
    return (kappa - 1) / (kappa + 1)


def heavy_ball_rate(kappa: float) -> float:
    """``(√κ − 1)/(√κ + 1)``: the asymptotic per-step contraction of Polyak's heavy-ball
    momentum with its optimal parameters (:func:`heavy_ball_parameters`) on a quadratic
    (chapter 3.1) — ``κ`` replaced by ``√κ``, the square-root speed-up of momentum."""
    kappa = _condition("kappa", kappa)
    root = math.sqrt(kappa)
    return (root - 1) / (root + 1)


def heavy_ball_parameters(lambda_min: float, lambda_max: float) -> tuple[float, float]:
    """Polyak's optimal heavy-ball parameters for a quadratic with Hessian eigenvalues in
    ``[λ_min, λ_max]``: ``η = 4/(√λ_max + √λ_min)²`` and momentum
    ``μ = ((√κ − 1)/(√κ + 1))²`` (chapter 3.1), for the update
    ``θ_{t+1} = θ_t − η ∇L(θ_t) + μ (θ_t − θ_{t−1})`` — ``torch.optim.SGD(lr=η, momentum=μ)``
    is the same iteration."""
    lambda_min, lambda_max = _checks.pair("(lambda_min, lambda_max)", (lambda_min, lambda_max))
    if lambda_min <= 0:
        raise ValueError(f"lambda_min must be a number > 0, got {lambda_min}")
    lr = 4 / (math.sqrt(lambda_max) + math.sqrt(lambda_min)) ** 2
    return lr, heavy_ball_rate(lambda_max / lambda_min) ** 2


def contraction(errors: Sequence[float] | torch.Tensor, skip: int = 0) -> float:
    """The measured per-step contraction of a run: the geometric mean of
    ``e_{t+1}/e_t`` over the steps after ``skip``, i.e. ``(e_T / e_skip)^{1/(T − skip)}`` for
    a sequence of distances (or any positive error) ``e_0 … e_T`` (chapter 3.1). Compare with
    :func:`gd_rate` and :func:`heavy_ball_rate`; skip the transient of a momentum run."""
    if isinstance(errors, torch.Tensor):
        errors = errors.detach().cpu().double().tolist()
    _checks.instance("errors", errors, Sequence, "a sequence of positive numbers")
    skip = _checks.integer("skip", skip, 0)
    if len(errors) < skip + 2:
        raise ValueError(f"errors must hold at least {skip + 2} values (skip + 2), "
                         f"got {len(errors)}")  # fmt: skip
    first = _checks.positive(f"errors[{skip}]", errors[skip])
    last = _checks.positive(f"errors[{len(errors) - 1}]", errors[-1])
    return (last / first) ** (1 / (len(errors) - 1 - skip))


# --- 4. gradient noise and the noise scale ---------------------------------------------------


class GradientNoise(NamedTuple):
    """What :func:`gradient_noise` measured on ``n`` examples: ``sigma2`` = ``σ²`` (the
    per-example gradient variance, a trace: the sum over parameters), ``grad_norm2`` =
    ``‖∇L‖²`` (the full-batch gradient's squared norm) and ``gradient`` (``∇L``, flat)."""

    sigma2: float
    grad_norm2: float
    gradient: torch.Tensor
    n: int

    @property
    def noise_scale(self) -> float:
        """``B_simple = σ² / ‖∇L‖²`` (:func:`noise_scale`)."""
        return noise_scale(self.sigma2, self.grad_norm2)

    def noise_to_signal(self, batch_size: int) -> float:
        """``σ² / (B ‖∇L‖²)`` for minibatches of ``batch_size`` (:func:`noise_to_signal`)."""
        return noise_to_signal(self.sigma2, self.grad_norm2, batch_size)


def gradient_noise(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    chunk: int = 256,
) -> GradientNoise:
    """The per-example gradient variance ``σ² = (1/N) Σ_i ‖∇ℓ_i − ∇L‖²`` and ``‖∇L‖²`` on
    ``(inputs, targets)`` at the model's parameters (chapter 3.1).

    Per-example gradients ``∇ℓ_i`` come from ``torch.func.vmap(grad(ℓ))``, ``chunk`` examples
    at a time (never all ``N × P`` at once); ``σ²`` is accumulated as
    ``(1/N) Σ ‖∇ℓ_i‖² − ‖∇L‖²``, with ``∇L`` their mean. A minibatch of ``B`` examples drawn
    with replacement has ``E‖g_B − ∇L‖² = σ²/B``. ``loss_fn`` must return the batch *mean*.
    """
    _check_data(model, loss_fn, inputs, targets)
    chunk = _checks.positive_int("chunk", chunk)
    params = _parameters(model)

    def one(p: Params, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (x[None],)), t[None])

    per_example = vmap(grad(one), in_dims=(None, 0, 0))
    n = len(targets)
    total = None
    sum_sq = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for start in range(0, n, chunk):
        grads = per_example(params, inputs[start:start + chunk], targets[start:start + chunk])
        flat = torch.cat([g.reshape(len(g), -1) for g in grads.values()], dim=1).double()
        sum_sq += (flat**2).sum()
        total = flat.sum(0) if total is None else total + flat.sum(0)
    mean = total / n
    grad_norm2 = (mean**2).sum()
    sigma2 = (sum_sq / n - grad_norm2).clamp_min(0.0)
    return GradientNoise(sigma2.item(), grad_norm2.item(), mean.float(), n)


def noise_scale(sigma2: float, grad_norm2: float) -> float:
    """The *simple noise scale* ``B_simple = σ² / ‖∇L‖²`` (McCandlish et al., 2018;
    chapters 3.1 and 7): at batch size ``B`` the minibatch gradient's noise-to-signal ratio is
    ``B_simple / B``. Below ``B_simple`` a larger batch buys almost proportionally better
    steps; well above it, the gradient is already accurate and a larger batch only costs more.
    With optimal learning rates the loss decrease per step grows as
    ``1 / (1 + B_noise/B)``, where ``B_noise = tr(HΣ)/(GᵀHG)`` equals ``B_simple`` when the
    Hessian is a multiple of the identity."""
    sigma2 = _checks.real("sigma2", sigma2, 0)
    grad_norm2 = _checks.positive("grad_norm2", grad_norm2)
    return sigma2 / grad_norm2


def noise_to_signal(sigma2: float, grad_norm2: float, batch_size: int) -> float:
    """``σ² / (B ‖∇L‖²)``: the expected squared error of a minibatch gradient relative to the
    squared norm of the gradient it estimates (chapter 3.1). Near 0 a minibatch step is as
    good as a full-batch one; above 1 the noise is larger than the signal, and unbiasedness
    alone does not make the step useful — a smaller learning rate must average the noise."""
    batch_size = _checks.positive_int("batch_size", batch_size)
    return noise_scale(sigma2, grad_norm2) / batch_size
