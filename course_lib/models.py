"""The models the course trains (chapters 1–4).

- :class:`Net` — the source document's network, ``10 → 20 → 1`` with a ReLU.
- :class:`MLP` — a LeNet-300-100-style multilayer perceptron (LeCun et al. 1998; the model
  Han et al. 2015 prune), sized for 8×8 digits by default.
- :class:`SmallCNN` — two Conv → BatchNorm → ReLU → MaxPool blocks for small images.
- :class:`StackedMLP` and :func:`fit_stacked` — K MLPs of one architecture trained as one
  (batched matrix products), with pruning masks and any per-model loss: how chapter 3.2
  affords five seeds for every arm of its comparisons.

``MLP`` and ``SmallCNN`` are ``nn.Sequential`` subclasses so that the structure of a model
is plain to see and structured pruning (chapter 3.2) can rebuild them layer by layer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from course_lib import _checks


class Net(nn.Module):
    """The document's model (section 4.1): ``Linear(10, 20) → ReLU → Linear(20, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class MLP(nn.Sequential):
    """``Flatten → [Linear → ReLU] × len(hidden) → Linear``.

    The default ``hidden=(300, 100)`` is LeNet-300-100; ``in_features=64`` fits 8×8 digits.
    """

    def __init__(
        self, in_features: int = 64, hidden: Sequence[int] = (300, 100), num_classes: int = 10
    ) -> None:
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("num_classes", num_classes)
        hidden = _checks.ints("hidden", hidden, nonempty=False)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = in_features
        for width in hidden:
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        super().__init__(*layers)
        self.in_features, self.hidden, self.num_classes = in_features, hidden, num_classes


class SmallCNN(nn.Sequential):
    """``[Conv3×3 → BatchNorm2d → ReLU → MaxPool2] × 2 → Flatten → Linear``, for
    ``image_size``² inputs (chapter 3.2 prunes its channels).

    With the defaults it takes ``(N, 1, 8, 8)`` digits: 8×8 → 4×4 → 2×2 feature maps. The
    convolutions have no bias: the BatchNorm that follows each one subtracts the mean and adds
    its own shift ``β`` (Ioffe & Szegedy 2015), so a bias would do nothing. Channel ``c`` of a
    block outputs ``ReLU(γ_c · (z_c − μ_c) / √(σ_c² + ε) + β_c)``; with ``γ_c = β_c = 0`` it is
    exactly zero, which is what network slimming (Liu et al. 2017) drives small ``γ`` towards.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        image_size: int = 8,
        hidden: int | None = None,
    ) -> None:
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("hidden", hidden, allow_none=True)
        _checks.positive_int("num_classes", num_classes)
        _checks.positive_int("image_size", image_size)
        channels = _checks.ints("channels", channels)
        if len(channels) != 2:
            raise ValueError(f"channels must hold exactly 2 ints >= 1, got {channels!r}")
        c1, c2 = channels
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        side = image_size // 4
        super().__init__(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            *([nn.Linear(c2 * side * side, hidden), nn.ReLU()] if hidden else []),
            nn.Linear(hidden or c2 * side * side, num_classes),
        )
        self.channels = (c1, c2)


# --- K MLPs as one module (chapter 3.2: seeds and arms at the cost of one run) ----------------

_STACK_ACTIVATIONS = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh, nn.Identity: lambda h: h}


def _layer_mask(layer: nn.Linear) -> torch.Tensor | None:
    """The pruning mask of a layer masked through a parametrization (``course_lib.prune``
    stores it as the ``mask`` buffer of the parametrization), or ``None``."""
    if parametrize.is_parametrized(layer, "weight"):
        for p in layer.parametrizations.weight:
            if isinstance(getattr(p, "mask", None), torch.Tensor):
                return p.mask
    return None


class StackedMLP(nn.Module):
    """``K`` MLPs of one architecture as one module (chapter 3.2).

    Layer ``l`` of the K models is one weight tensor ``W_l`` of shape ``(K, out, in)``, one
    bias ``b_l`` of shape ``(K, out)`` and one 0/1 mask ``M_l`` (a buffer, all ones unless the
    source layer was pruned with ``course_lib.prune``). For inputs ``x`` of shape
    ``(K, B, ...)`` (model ``k`` reads ``x[k]``) the forward pass is, layer by layer, one batched
    product over the K models,

        h ← act(b_l + h (M_l ⊙ W_l)ᵀ)        (torch.baddbmm)

    so a pruned weight is exactly zero in every forward pass whatever the optimizer does to the
    stored value, as with the masks of ``course_lib.prune``. Built from ``nn.Sequential``
    models of ``Flatten`` / ``Linear`` / ``ReLU`` / ``Tanh`` layers (e.g. :class:`MLP`);
    :meth:`unstack` gives them back. Trained by :func:`fit_stacked`.
    """

    def __init__(self, mlps: Sequence[nn.Module]) -> None:
        super().__init__()
        if isinstance(mlps, nn.Module) or not isinstance(mlps, Sequence) or not mlps:
            raise TypeError("mlps must be a non-empty list of nn.Sequential MLPs, "
                            f"got {type(mlps).__name__}")  # fmt: skip
        template = mlps[0]
        plan = self._plan(template)
        shapes = [tuple(m.weight.shape) for m in template if isinstance(m, nn.Linear)]
        for model in mlps:
            if self._plan(model) != plan or shapes != [
                tuple(m.weight.shape) for m in model if isinstance(m, nn.Linear)
            ]:
                raise ValueError("mlps must all have the architecture of mlps[0] "
                                 f"(layers {plan}, weight shapes {shapes})")  # fmt: skip
        self.plan = plan
        linears = [[m for m in model if isinstance(m, nn.Linear)] for model in mlps]
        with torch.no_grad():
            self.weights = nn.ParameterList(
                nn.Parameter(torch.stack([layers[i].weight.detach() for layers in linears]))
                for i in range(len(shapes))
            )  # fmt: skip
            self.biases = nn.ParameterList(
                nn.Parameter(torch.stack([
                    layers[i].bias.detach() if layers[i].bias is not None
                    else torch.zeros(shapes[i][0]) for layers in linears
                ]))
                for i in range(len(shapes))
            )  # fmt: skip
            for i in range(len(shapes)):
                masks = [_layer_mask(layers[i]) for layers in linears]
                mask = torch.stack([
                    torch.ones(shapes[i], dtype=torch.bool) if m is None else m.cpu().bool()
                    for m in masks
                ]).to(self.weights[i].device)  # fmt: skip
                self.register_buffer(f"mask{i}", mask)
        self._template = nn.Sequential(*(self._fresh(layer) for layer in template))

    @staticmethod
    def _plan(model: nn.Module) -> tuple[str, ...]:
        if not isinstance(model, nn.Sequential):
            raise TypeError("mlps must hold nn.Sequential MLPs (Flatten, Linear, ReLU/Tanh), "
                            f"got {type(model).__name__}")  # fmt: skip
        plan = []
        for layer in model:
            kind = parametrize.type_before_parametrizations(layer)
            if kind is nn.Linear:
                plan.append("linear")
            elif kind is nn.Flatten:
                plan.append("flatten")
            elif kind in _STACK_ACTIVATIONS:
                plan.append(kind.__name__)
            else:
                raise TypeError("mlps must hold nn.Sequential MLPs of Flatten, Linear, ReLU and "
                                f"Tanh layers, got a {kind.__name__} layer")  # fmt: skip
        return tuple(plan)

    @staticmethod
    def _fresh(layer: nn.Module) -> nn.Module:
        """A new, unparametrized layer of the same kind and shape (never a deep copy: removing
        a parametrization from a copy would break the source layer, chapter 3.2)."""
        kind = parametrize.type_before_parametrizations(layer)
        if kind is nn.Linear:
            out_features, in_features = layer.weight.shape
            return nn.Linear(in_features, out_features, bias=layer.bias is not None)
        if kind is nn.Flatten:
            return nn.Flatten(layer.start_dim, layer.end_dim)
        return copy.deepcopy(layer)

    @property
    def k(self) -> int:
        """The number of models."""
        return self.weights[0].shape[0]

    @property
    def masks(self) -> list[torch.Tensor]:
        """The masks ``M_l``, one bool tensor ``(K, out, in)`` per Linear layer (in place)."""
        return [getattr(self, f"mask{i}") for i in range(len(self.weights))]

    def effective_weights(self) -> list[torch.Tensor]:
        """``M_l ⊙ W_l`` for every layer: the weights the forward pass uses."""
        return [w * m for w, m in zip(self.weights, self.masks)]

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """Logits ``(K, B, classes)`` for inputs ``(K, B, ...)``; with ``return_hidden`` also
        the list of every hidden layer's output after its activation, each ``(K, B, width)``."""
        _checks.tensor("x", x, floating=True)
        if x.ndim < 3 or x.shape[0] != self.k:
            raise ValueError(f"x must have shape (K={self.k}, batch, features...), "
                             f"got {tuple(x.shape)}")  # fmt: skip
        h, hidden, layer = x.flatten(2), [], 0
        weights = self.effective_weights()
        for step in self.plan:
            if step == "linear":
                h = torch.baddbmm(self.biases[layer].unsqueeze(1), h,
                                  weights[layer].transpose(1, 2))  # fmt: skip
                layer += 1
            elif step != "flatten":
                h = _STACK_ACTIVATIONS[getattr(nn, step)](h)
                if layer < len(self.weights):
                    hidden.append(h)
        return (h, hidden) if return_hidden else h

    def unstack(self, k: int) -> nn.Sequential:
        """Model ``k`` as an ordinary ``nn.Sequential`` (a copy of the first source model's
        architecture) whose weights are ``M_l ⊙ W_l``: a pruned weight is a stored zero."""
        k = _checks.integer("k", k, 0, self.k - 1)
        model = copy.deepcopy(self._template)
        linears = [m for m in model if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, w, b in zip(linears, self.effective_weights(), self.biases, strict=True):
                layer.weight = nn.Parameter(w[k].detach().clone().cpu())
                if layer.bias is not None:
                    layer.bias = nn.Parameter(b[k].detach().clone().cpu())
        return model


def fit_stacked(
    stack: StackedMLP,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    seeds: Sequence[int],
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    loss_fn: Callable[[StackedMLP, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    after_step: Callable[[int], None] | None = None,
    extra_params: Sequence[torch.Tensor] = (),
    per_model: bool = False,
) -> torch.Tensor:
    """Train the K models of ``stack`` at once with Adam, each on its own batches (chapter 3.2).

    ``inputs`` / ``targets``: ``(n, ...)`` shared by every model, or with ``per_model=True``
    ``(K, n, ...)``, one set per model (e.g. each seed's own labeled subset). Each epoch,
    model ``k`` visits its ``n`` examples in the order ``torch.randperm(n, generator=g_k)``
    (``g_k`` seeded once with ``seeds[k]``), in batches of ``batch_size`` (``batch_size >= n``:
    full batch). The loss is ``Σ_k L_k`` with ``L_k`` model
    k's mean loss on its batch — ``loss_fn(stack, x, t) -> (K,)`` for the batch ``x``
    ``(K, B, ...)``, ``t`` ``(K, B, ...)``; default cross-entropy — so ``∂(Σ_j L_j)/∂θ_k =
    ∂L_k/∂θ_k``, and ``torch.optim.Adam`` updates every entry from its own gradient: each model
    follows exactly the run it would follow alone (the tests check it against separate runs).
    A masked weight has zero gradient, so Adam leaves it (and its moments) alone.
    ``after_step(step)`` runs after every optimizer step (gradual pruning updates the masks
    there); ``extra_params`` are trained too (e.g. the regressors of a hint loss). Returns the
    per-model mean training loss of the last epoch, shape ``(K,)``.
    """
    _checks.instance("stack", stack, StackedMLP)
    k = stack.k
    seeds = _checks.ints("seeds", seeds, 0)
    if len(seeds) != k:
        raise ValueError(f"seeds must hold one seed per model ({k}), got {len(seeds)}")
    epochs = _checks.positive_int("epochs", epochs)
    lr = _checks.positive("lr", lr)
    batch_size = _checks.positive_int("batch_size", batch_size)
    _checks.callable_or_none("loss_fn", loss_fn, "loss_fn(stack, x, t) -> (K,) losses")
    _checks.callable_or_none("after_step", after_step, "after_step(step) -> None")
    _checks.tensor("inputs", inputs, floating=True, nonempty=True)
    _checks.tensor("targets", targets, nonempty=True)
    per_model = _checks.flag("per_model", per_model)
    if per_model and (inputs.ndim < 2 or targets.ndim < 2 or inputs.shape[0] != k
                      or targets.shape[0] != k):  # fmt: skip
        raise ValueError(f"inputs and targets must have shape (K={k}, n, ...) with "
                         f"per_model=True, got {tuple(inputs.shape)} and "
                         f"{tuple(targets.shape)}")  # fmt: skip
    axis = 1 if per_model else 0
    n = inputs.shape[axis]
    if targets.shape[axis] != n:
        raise ValueError(f"inputs and targets must hold as many examples, got inputs "
                         f"{tuple(inputs.shape)} and targets {tuple(targets.shape)}")  # fmt: skip
    device = stack.weights[0].device
    inputs, targets = inputs.to(device), targets.to(device)
    if loss_fn is None:
        def loss_fn(model, x, t):
            logits = model(x)
            return F.cross_entropy(logits.flatten(0, 1), t.flatten(), reduction="none") \
                .view(k, -1).mean(1)  # fmt: skip
    params = [*stack.parameters(), *extra_params]
    optimizer = torch.optim.Adam(params, lr=lr)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    rows = torch.arange(k, device=device)[:, None]
    step, last = 0, torch.zeros(k, device=device)
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
        total = torch.zeros(k, device=device)
        for start in range(0, n, batch_size):
            index = orders[:, start:start + batch_size]  # (K, B): model k's batch
            x = inputs[rows, index] if per_model else inputs[index]
            t = targets[rows, index] if per_model else targets[index]
            losses = loss_fn(stack, x, t)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            step += 1
            total += losses.detach() * index.shape[1]
            if after_step is not None:
                after_step(step)
        last = total / n
    return last.cpu()


@torch.no_grad()
def stacked_accuracy(stack: StackedMLP, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy of each of the K models on ``(X, y)`` shared by all, shape ``(K,)`` (float64:
    exact counts / n)."""
    _checks.instance("stack", stack, StackedMLP)
    device = stack.weights[0].device
    X, y = X.to(device), y.to(device)
    logits = stack(X.expand(stack.k, *X.shape))
    return ((logits.argmax(-1) == y).sum(1).double() / len(y)).cpu()
