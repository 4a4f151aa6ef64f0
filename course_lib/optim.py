"""Parameter optimizers written from their formulas (chapter 3.1).

Each class is a ``torch.optim.Optimizer`` whose ``step()`` is the update rule of the book,
line by line, in the order of the formula:

- :class:`GD` — gradient descent, :math:`\\theta \\leftarrow \\theta - \\eta\\,\\nabla L(\\theta)`.
- :class:`SGD` — stochastic gradient descent with momentum (Polyak 1964), Nesterov momentum
  (Sutskever et al. 2013) and L2 weight decay.
- :class:`Adam` — Adam (Kingma & Ba 2015), with AMSGrad (Reddi et al. 2018) and, with
  ``decoupled_weight_decay=True``, AdamW (Loshchilov & Hutter 2019).

The state names are PyTorch's (``momentum_buffer``, ``step``, ``exp_avg`` = :math:`m`,
``exp_avg_sq`` = :math:`v`, ``max_exp_avg_sq`` = :math:`\\hat v^{\\max}`), so a checkpoint of
``torch.optim.Adam`` loads into :class:`Adam` and vice versa. The tests check every method
against ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (max abs difference ≤ 1e-6 after 200 steps).

For the figures of chapter 3.1 the module also runs any optimizer on a 2-D function
(:func:`optimize_2d`) and provides two classic test functions (:func:`quadratic`,
:func:`rosenbrock`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from course_lib import _checks

__all__ = [
    "GD",
    "SGD",
    "Adam",
    "Trajectory",
    "optimize_2d",
    "quadratic",
    "rosenbrock",
]


# --- gradient descent ---------------------------------------------------------------------------


def _evaluate(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """The loss from ``closure`` (re-evaluated with gradients enabled, as torch.optim does)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class GD(torch.optim.Optimizer):
    r"""Gradient descent (梯度下降), chapter 3.1.1:

    .. math:: \theta_{t+1} = \theta_t - \eta\, \nabla L(\theta_t)

    with learning rate :math:`\eta` = ``lr``. "Full-batch" is the caller's part: compute the
    loss on the *whole* training set before ``backward()``; on a minibatch the same update is
    SGD (:class:`SGD`). On a quadratic with largest Hessian eigenvalue :math:`L` it converges
    for :math:`0 < \eta < 2/L` and diverges for :math:`\eta > 2/L`.
    """

    def __init__(self, params: Iterable, lr: float) -> None:
        super().__init__(params, {"lr": _checks.real("lr", lr, 0)})

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update ``θ ← θ − η ∇L(θ)`` of every parameter that has a gradient."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr = group["lr"]
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                theta.add_(theta.grad, alpha=-lr)  # θ ← θ − η g
        return loss


# --- stochastic gradient descent with momentum --------------------------------------------------


class SGD(torch.optim.Optimizer):
    r"""Stochastic gradient descent (随机梯度下降) with momentum (动量), chapter 3.1.2.

    With :math:`g_t = \nabla L_{B_t}(\theta_t)` the gradient on a random minibatch
    :math:`B_t` (an unbiased estimate of the full gradient, Robbins & Monro 1951), weight decay
    :math:`\lambda`, momentum :math:`\mu` and dampening :math:`\tau`:

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_t \qquad\text{(L2 weight decay)}\\
        b_t &= \mu\, b_{t-1} + (1 - \tau)\, g_t \qquad (b_1 = g_1)\\
        d_t &= g_t + \mu\, b_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = b_t\\
        \theta_{t+1} &= \theta_t - \eta\, d_t

    ``momentum=0`` is plain SGD (:math:`d_t = g_t`). The momentum buffer :math:`b` is stored
    in ``state[p]["momentum_buffer"]``. This is PyTorch's form of heavy-ball momentum
    (Polyak 1964): the learning rate multiplies the buffer instead of being folded into it,
    which gives the same iterates for a constant learning rate.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        nesterov: bool = False,
        weight_decay: float = 0,
    ) -> None:
        lr = _checks.real("lr", lr, 0)
        momentum = _checks.real("momentum", momentum, 0)
        dampening = _checks.fraction("dampening", dampening, closed=True)
        nesterov = _checks.flag("nesterov", nesterov)
        weight_decay = _checks.real("weight_decay", weight_decay, 0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={momentum}, dampening={dampening}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One SGD update of every parameter that has a gradient (formula in the class doc)."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
            nesterov, wd = group["nesterov"], group["weight_decay"]
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                g = theta.grad
                if wd != 0:
                    g = g.add(theta, alpha=wd)  # g ← g + λθ
                if mu != 0:
                    state = self.state[theta]
                    b = state.get("momentum_buffer")
                    if b is None:  # b_1 = g_1
                        b = state["momentum_buffer"] = g.detach().clone()
                    else:  # b ← μ b + (1 − τ) g
                        b.mul_(mu).add_(g, alpha=1 - tau)
                    g = g.add(b, alpha=mu) if nesterov else b  # d = g + μ b  or  d = b
                theta.add_(g, alpha=-lr)  # θ ← θ − η d
        return loss


# --- Adam and AdamW -----------------------------------------------------------------------------


class Adam(torch.optim.Optimizer):
    r"""Adam (Kingma & Ba 2015), chapter 3.1.3; ``decoupled_weight_decay=True`` is AdamW.

    With :math:`g_t` the minibatch gradient, step :math:`t = 1, 2, \dots`:

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}
            \qquad\text{(L2 penalty, Adam only)}\\
        \theta_{t-1} &\leftarrow (1 - \eta\lambda)\,\theta_{t-1}
            \qquad\text{(decoupled decay, AdamW only)}\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \qquad\text{(first moment)}\\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \qquad\text{(second moment)}\\
        \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t)
            \qquad\text{(bias correction)}\\
        \theta_t &= \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    with :math:`m_0 = v_0 = 0`. With ``amsgrad=True`` (Reddi et al. 2018) the denominator uses
    :math:`\hat v^{\max}_t = \max(\hat v^{\max}_{t-1}, v_t)` instead of :math:`v_t`.

    ``step()`` computes the last line as
    :math:`\theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\, m_t \big/
    \big(\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon\big)`, the same number without the
    temporaries :math:`\hat m, \hat v` (and the same operations as ``torch.optim.Adam``).
    State: ``step`` (:math:`t`), ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`),
    ``max_exp_avg_sq``. ``foreach=True`` runs the same formula with ``torch._foreach_*``
    kernels on whole lists of tensors (fewer Python calls for models of many small tensors).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        amsgrad: bool = False,
        *,
        foreach: bool = False,
    ) -> None:
        if not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1, beta2 = (_checks.real(f"betas[{i}]", betas[i], 0, 1, high_open=True) for i in (0, 1))
        decoupled = decoupled_weight_decay
        defaults = {
            "lr": _checks.real("lr", lr, 0),
            "betas": (beta1, beta2),
            "eps": _checks.positive("eps", eps),
            "weight_decay": _checks.real("weight_decay", weight_decay, 0),
            "decoupled_weight_decay": _checks.flag("decoupled_weight_decay", decoupled),
            "amsgrad": _checks.flag("amsgrad", amsgrad),
            "foreach": _checks.flag("foreach", foreach),
        }
        super().__init__(params, defaults)

    def _state_of(self, theta: Tensor, amsgrad: bool) -> dict:
        state = self.state[theta]
        if len(state) == 0:  # m_0 = v_0 = 0
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
        if amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One Adam / AdamW update of every parameter that has a gradient."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            if group["foreach"]:
                self._step_foreach(group)
                continue
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad = group["weight_decay"], group["amsgrad"]
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                g = theta.grad
                state = self._state_of(theta, amsgrad)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                t = state["step"] = int(state["step"]) + 1

                if wd != 0:
                    if group["decoupled_weight_decay"]:
                        theta.mul_(1 - lr * wd)  # AdamW: θ ← (1 − ηλ) θ
                    else:
                        g = g.add(theta, alpha=wd)  # Adam + L2: g ← g + λθ
                m.lerp_(g, 1 - beta1)  # m ← β1 m + (1 − β1) g  (= m + (1 − β1)(g − m))
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v ← β2 v + (1 − β2) g²
                if amsgrad:
                    v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])

                bias_correction1 = 1 - beta1**t  # m̂ = m / (1 − β1ᵗ)
                bias_correction2 = 1 - beta2**t  # v̂ = v / (1 − β2ᵗ)
                denom = v.sqrt().div_(bias_correction2**0.5).add_(eps)  # √v̂ + ε
                theta.addcdiv_(m, denom, value=-lr / bias_correction1)  # θ ← θ − η m̂/(√v̂ + ε)
        return loss

    def _step_foreach(self, group: dict) -> None:
        """The same update as :meth:`step`, each line applied to the whole list of tensors."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        wd, amsgrad = group["weight_decay"], group["amsgrad"]
        thetas = [p for p in group["params"] if p.grad is not None]
        if not thetas:
            return
        states = [self._state_of(p, amsgrad) for p in thetas]
        grads = [p.grad for p in thetas]
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        ts = []
        for s in states:
            s["step"] = int(s["step"]) + 1
            ts.append(s["step"])

        if wd != 0:
            if group["decoupled_weight_decay"]:
                torch._foreach_mul_(thetas, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, thetas, alpha=wd)
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
        if amsgrad:
            vs = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(vs, [s["exp_avg_sq"] for s in states])

        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5 for t in ts])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(thetas, ms, denom, [-lr / (1 - beta1**t) for t in ts])


# --- optimizers on 2-D functions (the figures of chapter 3.1) ----------------------------------


class Trajectory(NamedTuple):
    """The path of an optimizer on a 2-D function: ``points`` ``(n, 2)`` and ``values`` ``(n,)``
    (float64; row 0 is the start)."""

    points: Tensor
    values: Tensor


def quadratic(x: Tensor, y: Tensor, a: float = 1.0, b: float = 10.0) -> Tensor:
    r"""The quadratic bowl :math:`f(x, y) = \tfrac12 (a x^2 + b y^2)` (chapter 3.1).

    Its Hessian is :math:`\mathrm{diag}(a, b)`: for :math:`b > a` it is ill-conditioned
    (condition number :math:`b/a`) and gradient descent is stable for :math:`\eta < 2/b`.
    """
    a, b = _checks.real("a", a), _checks.real("b", b)
    return 0.5 * (a * x**2 + b * y**2)


def rosenbrock(x: Tensor, y: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    r"""Rosenbrock's banana valley :math:`f(x, y) = (a - x)^2 + b (y - x^2)^2` (chapter 3.1),
    minimum 0 at :math:`(a, a^2)` at the end of a long, flat, curved valley."""
    a, b = _checks.real("a", a), _checks.real("b", b)
    return (a - x) ** 2 + b * (y - x**2) ** 2


def optimize_2d(
    f: Callable[[Tensor, Tensor], Tensor],
    start: Sequence[float],
    make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer],
    steps: int = 100,
    grad_noise: float = 0.0,
    seed: int = 0,
) -> Trajectory:
    r"""Run an optimizer on a 2-D function ``f(x, y)`` and return its :class:`Trajectory`.

    ``make_optimizer(params)`` builds the optimizer for the single parameter ``[x, y]``, e.g.
    ``lambda p: Adam(p, lr=0.1)``. Each step computes :math:`\nabla f` by autograd; with
    ``grad_noise`` :math:`=\sigma > 0` it adds Gaussian noise :math:`\sigma\,\xi`,
    :math:`\xi \sim \mathcal N(0, I)` (seeded by ``seed``), a stand-in for the minibatch noise
    of SGD (chapter 3.1.2). The run stops early when the point or value becomes non-finite
    (a diverging learning rate), so the trajectory may be shorter than ``steps + 1``.
    """
    _checks.function("f", f, "f(x, y) -> scalar tensor")
    _checks.function("make_optimizer", make_optimizer, "make_optimizer(params) -> Optimizer")
    if isinstance(start, str) or not hasattr(start, "__len__") or len(start) != 2:
        raise ValueError(f"start must be a point (x, y), got {start!r}")
    start = (_checks.real("start[0]", start[0]), _checks.real("start[1]", start[1]))
    steps = _checks.integer("steps", steps, 0)
    grad_noise = _checks.real("grad_noise", grad_noise, 0)
    seed = _checks.seed("seed", seed)
    xy = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = _checks.optimizer("make_optimizer(params)", make_optimizer([xy]))
    generator = torch.Generator().manual_seed(seed)
    points, values = [], []
    for i in range(steps + 1):
        optimizer.zero_grad()
        value = f(xy[0], xy[1])
        point, v = xy.tolist(), value.item()
        if not (math.isfinite(v) and math.isfinite(point[0]) and math.isfinite(point[1])):
            break
        points.append(point)
        values.append(v)
        if i == steps:
            break
        value.backward()
        if grad_noise > 0:
            xy.grad += grad_noise * torch.randn(2, generator=generator, dtype=torch.float64)
        optimizer.step()
    if not points:
        raise ValueError(f"start must be a point where f is finite, got {tuple(start)}")
    as_tensor = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    return Trajectory(as_tensor(points), as_tensor(values))
