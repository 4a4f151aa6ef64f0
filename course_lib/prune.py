"""Pruning (剪枝): remove unimportant weights or whole neurons (chapter 3.2).

The source document lists three steps; each maps to code here:

1. *Importance* of every weight or neuron — the absolute value of a weight ``|w|``
   (:func:`magnitude_prune`), or for a whole neuron the L1 norm of its incoming weights or the
   mean absolute value of its activation (:func:`neuron_importance`).
2. *Remove* the least important ones — a 0/1 mask that zeroes weights (unstructured pruning,
   :func:`magnitude_prune`) or a smaller dense model without the neurons / channels
   (structured pruning, :func:`remove_neurons`).
3. *Update the model and retrain* — fine-tune with the mask held in place; repeated in rounds
   by :func:`iterative_prune` (Han et al. 2015).

Masks are attached with ``torch.nn.utils.parametrize``: the layer's ``weight`` is *computed*
as ``where(mask, original, 0)`` at every forward pass, so a pruned weight is exactly zero no
matter what an optimizer (momentum, Adam, weight decay) does to the stored original.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from course_lib import _checks

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types whose ``weight`` is pruned (biases are kept, as in Han et al. 2015)."""

_SCOPES = ("global", "layer")
"""``scope`` of :func:`magnitude_prune`: one threshold for all layers, or one per layer."""

# Modules that act on each unit (neuron / channel) separately: a unit removed before them is
# simply absent after them. Used by remove_neurons to follow a unit from layer to layer.
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU)
_PER_UNIT = (
    *_ACTIVATIONS, nn.Identity, nn.Dropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear / Conv layer of ``model``, in module order (3.2).

    Raises ``ValueError`` (naming ``model``) if there is none.
    """
    _checks.module("model", model)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise ValueError(
            "model must contain at least one prunable layer (nn.Linear / nn.Conv1d/2d/3d), "
            f"got {type(model).__name__} with none"
        )
    return layers


# --- unstructured pruning: masks ------------------------------------------------------------


class _Mask(nn.Module):
    """Parametrization ``weight = where(mask, original, 0)``; the mask is a bool buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, original, torch.zeros((), dtype=original.dtype,
                                                            device=original.device))


def _current_mask(module: nn.Module) -> torch.Tensor | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, _Mask):
                return p.mask
    return None


def get_mask(module: nn.Module) -> torch.Tensor:
    """The 0/1 pruning mask of a layer's weight (all ones if the layer was never pruned)."""
    if not isinstance(module, nn.Module) or not isinstance(
        getattr(module, "weight", None), torch.Tensor
    ):
        raise TypeError(
            "module must be a layer with a weight (a Linear or Conv layer), "
            f"got {type(module).__name__}"
        )
    mask = _current_mask(module)
    return torch.ones_like(module.weight, dtype=torch.bool) if mask is None else mask.clone()


def set_mask(module: nn.Module, mask: torch.Tensor) -> nn.Module:
    """Attach (or replace) the 0/1 pruning mask of a Linear / Conv layer's weight, in place:
    from then on ``weight = where(mask, original, 0)`` (chapter 3.2). Use it to copy a mask
    found on one network onto another (e.g. the lottery-ticket experiment)."""
    _checks.instance("module", module, PRUNABLE, "a Linear or Conv layer")
    if not isinstance(mask, torch.Tensor) or mask.shape != module.weight.shape:
        shape = getattr(mask, "shape", None)
        raise ValueError(
            f"mask must be a tensor of shape {tuple(module.weight.shape)}, got {shape}"
        )
    if mask.dtype != torch.bool and not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 and 1")
    with torch.no_grad():
        _set_mask(module, mask.to(device=module.weight.device, dtype=torch.bool))
    return module


def _set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    existing = _current_mask(module)
    if existing is not None:
        existing.copy_(mask)
    else:
        parametrize.register_parametrization(module, "weight", _Mask(mask))


def _smallest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Bool vector, True at the ``n`` smallest entries of ``scores`` (``torch.topk`` picks them,
    exactly as ``torch.nn.utils.prune.L1Unstructured`` does, so ties break the same way)."""
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    if n > 0:
        chosen[torch.topk(scores, k=n, largest=False).indices] = True
    return chosen


def magnitude_prune(model: nn.Module, amount: float, scope: str = "global") -> nn.Module:
    """Unstructured L1-magnitude pruning of every Linear / Conv weight, in place (chapter 3.2).

    Importance of a weight is ``|w|``. With ``scope="global"`` the ``round(amount · N)``
    weights of smallest ``|w|`` among *all* ``N`` prunable weights are zeroed (so layers end
    with different sparsities); with ``scope="layer"`` each layer loses ``round(amount · n_l)``
    of its own ``n_l`` weights. The zeros are exactly those of
    ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount)`` and
    ``l1_unstructured`` on an unpruned model.

    ``amount`` is the *total* target sparsity of the weights in scope, not the fraction of the
    remaining ones; a weight pruned once stays pruned (masks only lose ones), so calling with
    an ``amount`` below the current sparsity changes nothing. The masks stay applied through
    any later training (see the module docstring); :func:`make_permanent` bakes them in.
    Returns ``model``.
    """
    amount = _checks.fraction("amount", amount, closed=True)
    _checks.one_of("scope", scope, _SCOPES)
    layers = prunable_layers(model)
    if scope == "global":
        scores = torch.cat([m.weight.detach().abs().reshape(-1) for _, m in layers])
        prune_flat = _smallest(scores, round(amount * scores.numel()))
        pieces = torch.split(prune_flat, [m.weight.numel() for _, m in layers])
    else:
        pieces = [
            _smallest(m.weight.detach().abs().reshape(-1), round(amount * m.weight.numel()))
            for _, m in layers
        ]
    for (_, module), pruned in zip(layers, pieces, strict=True):
        keep = ~pruned.reshape(module.weight.shape) & get_mask(module)
        with torch.no_grad():
            _set_mask(module, keep)
    return model


def _unmask(module: nn.Module) -> None:
    """Turn a masked weight back into a plain parameter holding ``where(mask, original, 0)``.

    ``parametrize.remove_parametrizations`` deletes the ``weight`` property from the module's
    class, which ``copy.deepcopy`` shares between a module and its copies, and so would break
    every copy; when the mask is the only parametrization we restore the class by hand.
    """
    plist = module.parametrizations
    only_mask = list(plist.keys()) == ["weight"] and len(plist.weight) == 1
    if only_mask and _current_mask(module) is not None:
        weight = module.weight.detach().clone()
        original_class = parametrize.type_before_parametrizations(module)
        del module._modules["parametrizations"]
        module.__class__ = original_class
        module.weight = nn.Parameter(weight)
    else:
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove the masks, keeping the zeros: each weight becomes an ordinary parameter equal to
    ``where(mask, original, 0)`` (like ``torch.nn.utils.prune.remove``). In place; chapter 3.2."""
    _checks.module("model", model)
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            _unmask(module)
    return model


class LayerSparsity(NamedTuple):
    """Sparsity of one layer's weight: ``zeros / weights``."""

    name: str
    shape: tuple[int, ...]
    weights: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.weights


class SparsityReport(NamedTuple):
    """Overall fraction of zero weights and one :class:`LayerSparsity` per prunable layer."""

    overall: float
    layers: list[LayerSparsity]

    def to_frame(self):
        """A ``pandas.DataFrame`` in the style of Han et al. 2015's tables."""
        import pandas as pd

        rows = [
            {
                "layer": s.name,
                "shape": "×".join(map(str, s.shape)),
                "weights": s.weights,
                "nonzero": s.nonzero,
                "remaining %": 100.0 * s.nonzero / s.weights,
            }
            for s in self.layers
        ]
        total = sum(s.weights for s in self.layers)
        nonzero = sum(s.nonzero for s in self.layers)
        rows.append({"layer": "total", "shape": "", "weights": total, "nonzero": nonzero,
                     "remaining %": 100.0 * nonzero / total})
        return pd.DataFrame(rows).set_index("layer")


@torch.no_grad()
def sparsity(model: nn.Module) -> SparsityReport:
    """Fraction of exactly-zero weights among all Linear / Conv weights, ``Σ zeros / Σ n_l``,
    and the per-layer breakdown (chapter 3.2). Biases are not counted."""
    stats = []
    for name, module in prunable_layers(model):
        w = module.weight
        stats.append(LayerSparsity(name, tuple(w.shape), w.numel(), int((w != 0).sum())))
    total = sum(s.weights for s in stats)
    return SparsityReport(1.0 - sum(s.nonzero for s in stats) / total, stats)


# --- iterative pruning ----------------------------------------------------------------------


def sparsity_schedule(target: float, rounds: int, start: float = 0.0) -> list[float]:
    """Sparsity after each of ``rounds`` rounds going from ``start`` to ``target``, each round
    removing the same fraction of the weights still left (chapter 3.2):

    ``s_k = 1 − (1 − start) · ((1 − target) / (1 − start))^{k / rounds}``, ``k = 1..rounds``

    (with ``start = 0``: ``s_k = 1 − (1 − target)^{k / rounds}``)."""
    target = _checks.fraction("target", target, closed=True)
    start = _checks.fraction("start", start, closed=True)
    if start > target or start == 1.0:
        raise ValueError(f"start must be < 1 and <= target, got start={start}, target={target}")
    rounds = _checks.positive_int("rounds", rounds)
    ratio = (1.0 - target) / (1.0 - start)
    return [1.0 - (1.0 - start) * ratio ** (k / rounds) for k in range(1, rounds + 1)]


def iterative_prune(
    model: nn.Module,
    target: float,
    rounds: int,
    fine_tune: Callable[[nn.Module], Any],
    scope: str = "global",
) -> list[dict[str, Any]]:
    """Han et al.'s schedule: ``rounds`` × (prune to the next sparsity → ``fine_tune(model)``)
    from the model's current sparsity up to ``target`` (:func:`sparsity_schedule`), in place
    (chapter 3.2). Calling it again with a higher ``target`` continues where it stopped.

    ``fine_tune`` trains the masked model (the masks keep pruned weights at zero) and may
    return anything, e.g. a validation accuracy. Returns one record per round:
    ``{"round", "sparsity", "result"}`` where ``sparsity`` is measured after fine-tuning.
    """
    _checks.function("fine_tune", fine_tune, "fine_tune(model) -> anything")
    _checks.one_of("scope", scope, _SCOPES)
    target = _checks.fraction("target", target, closed=True)
    start = min(sparsity(model).overall, target)
    records = []
    for k, level in enumerate(sparsity_schedule(target, rounds, start=start), start=1):
        magnitude_prune(model, level, scope=scope)
        result = fine_tune(model)
        records.append({"round": k, "sparsity": sparsity(model).overall, "result": result})
    return records


# --- structured pruning: remove neurons and channels ----------------------------------------


def _chain(model: nn.Module) -> list[nn.Module]:
    _checks.instance("model", model, nn.Sequential, "an nn.Sequential (e.g. models.MLP, SmallCNN)")
    modules = list(model)
    for m in modules:
        if getattr(m, "groups", 1) != 1:
            raise TypeError("remove_neurons supports only convolutions with groups=1")
        if not isinstance(m, (*PRUNABLE, nn.Flatten, *_PER_UNIT)):
            raise TypeError(
                f"remove_neurons does not know how to follow units through {type(m).__name__}"
            )
    return modules


_IMPORTANCE = ("l1", "activation")


@torch.no_grad()
def neuron_importance(
    model: nn.Module,
    importance: str = "l1",
    inputs: torch.Tensor | None = None,
    *,
    include_bias: bool = False,
) -> list[torch.Tensor]:
    """Importance of every output unit of every *hidden* Linear / Conv layer (chapter 3.2).

    - ``"l1"``: L1 norm of the unit's incoming weights, ``Σ_i |W_{j,i}|`` — Li et al. 2017's
      filter criterion (for a channel: the sum over its whole kernel). ``include_bias=True``
      adds ``|b_j|``, so that a unit whose weights are all zero still counts by its bias
      (its output is ``ReLU(b_j)``, not 0).
    - ``"activation"``: mean absolute *output* of the unit over ``inputs``, after its
      non-linearity (``mean |ReLU(z_j)|``, the document's "activation" criterion; over batch
      and positions for a channel). A unit that never fires scores 0. The non-linearity is the
      last activation module (ReLU, GELU, …) before the next Linear / Conv layer or
      ``Flatten``; without one, the layer's own output is scored.

    Returns one 1-D tensor per hidden layer (the last Linear / Conv layer is the output and is
    not listed).
    """
    _checks.one_of("importance", importance, _IMPORTANCE)
    _checks.flag("include_bias", include_bias)
    modules = _chain(model)
    hidden = [i for i, m in enumerate(modules) if isinstance(m, PRUNABLE)][:-1]
    if importance == "l1":
        scores = []
        for i in hidden:
            w, b = modules[i].weight, modules[i].bias
            s = w.abs().reshape(w.shape[0], -1).sum(dim=1)
            scores.append(s + b.abs() if include_bias and b is not None else s)
        return scores
    _checks.tensor("inputs (needed for importance='activation')", inputs)
    scored = {}  # index of the module whose output is scored -> index of the hidden layer
    for i in hidden:
        j = i
        for k in range(i + 1, len(modules)):
            if isinstance(modules[k], (*PRUNABLE, nn.Flatten)):
                break
            if isinstance(modules[k], _ACTIVATIONS):
                j = k
        scored[j] = i
    scores, x = {}, inputs
    for j, m in enumerate(modules):
        x = m(x)
        if j in scored:
            scores[scored[j]] = x.abs().mean(dim=[d for d in range(x.ndim) if d != 1])
    return [scores[i] for i in hidden]


def _slice_layer(layer: nn.Module, keep_out=None, keep_in=None) -> nn.Module:
    new = copy.deepcopy(layer)
    if parametrize.is_parametrized(new, "weight"):
        _unmask(new)
    w = new.weight.detach()
    b = None if new.bias is None else new.bias.detach()
    if keep_out is not None:
        w = w[keep_out]
        b = None if b is None else b[keep_out]
    if keep_in is not None:
        w = w[:, keep_in]
    new.weight = nn.Parameter(w.clone())
    if b is not None:
        new.bias = nn.Parameter(b.clone())
    if isinstance(new, nn.Linear):
        new.out_features, new.in_features = w.shape
    else:
        new.out_channels, new.in_channels = w.shape[0], w.shape[1] * new.groups
    return new


def remove_neurons(
    model: nn.Module,
    amount: float,
    importance: str = "l1",
    inputs: torch.Tensor | None = None,
    *,
    include_bias: bool = False,
) -> nn.Sequential:
    """Structured pruning: a smaller *dense* copy of ``model`` without the least important
    ``round(amount · n)`` units of each hidden layer (neurons of a Linear, channels of a Conv),
    at least one unit kept per layer (chapter 3.2).

    A unit is removed together with its row in its own layer (weights and bias) and its
    column(s) in the next layer; after a ``Flatten`` a channel owns a contiguous block of
    ``height × width`` inputs of the next Linear. If the removed units' incoming weights and
    biases were already zero their outputs were ``ReLU(0) = 0``, so the smaller model computes
    exactly the same function. Importance (``importance``, ``inputs``, ``include_bias``): see
    :func:`neuron_importance`; the default ranks by the L1 norm of the incoming weights, as
    Li et al. 2017 do. ``model`` must be an
    ``nn.Sequential`` (``course_lib.models.MLP``, ``SmallCNN``); it is not modified; masks are
    baked in. The result is an ``nn.Sequential`` with the same layer order.
    """
    amount = _checks.fraction("amount", amount, closed=True)
    prunable_layers(model)
    modules = _chain(model)
    scores = neuron_importance(model, importance, inputs, include_bias=include_bias)
    layer_idx = [i for i, m in enumerate(modules) if isinstance(m, PRUNABLE)]
    keeps: dict[int, torch.Tensor] = {}
    for i, s in zip(layer_idx[:-1], scores, strict=True):
        n = s.numel()
        n_keep = max(1, n - round(amount * n))
        keeps[i] = torch.sort(torch.topk(s, k=n_keep, largest=True).indices).values

    new_modules: list[nn.Module] = []
    keep_in = None  # units of the previous prunable layer that survive, if any
    channels = None  # number of channels before a Flatten (to map channel → inputs)
    for i, m in enumerate(modules):
        if isinstance(m, PRUNABLE):
            new_modules.append(_slice_layer(m, keep_out=keeps.get(i), keep_in=keep_in))
            keep_in = keeps.get(i)
            channels = m.weight.shape[0]
        elif isinstance(m, nn.Flatten):
            if keep_in is not None and channels is not None:
                nxt = next(modules[j] for j in range(i + 1, len(modules))
                           if isinstance(modules[j], PRUNABLE))
                per_channel = nxt.weight.shape[1] // channels
                if per_channel > 1:
                    offsets = torch.arange(per_channel)
                    keep_in = (keep_in[:, None] * per_channel + offsets).reshape(-1)
            new_modules.append(copy.deepcopy(m))
        else:
            new_modules.append(copy.deepcopy(m))
    return nn.Sequential(*new_modules)


def hidden_widths(model: nn.Module) -> list[int]:
    """Output units of every hidden Linear / Conv layer of an ``nn.Sequential`` (chapter 3.2)."""
    return [m.weight.shape[0] for m in _chain(model) if isinstance(m, PRUNABLE)][:-1]
