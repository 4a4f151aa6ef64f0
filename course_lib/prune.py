"""Pruning (剪枝): remove unimportant weights or whole neurons (chapter 3.2).

The source document lists three steps; each maps to code here:

1. *Importance* of every weight or neuron — the absolute value of a weight ``|w|``
   (:func:`magnitude_prune`), or for a whole neuron or channel the L1 norm of its incoming
   weights, its mean activation, a first-order Taylor estimate of the loss change, the
   BatchNorm scale ``|γ|`` or a random score (:func:`neuron_importance`).
2. *Remove* the least important ones — a 0/1 mask that zeroes weights (unstructured pruning,
   :func:`magnitude_prune`; the 2:4 pattern of :func:`nm_mask`) or a smaller dense model without
   the neurons / channels (structured pruning, :func:`remove_neurons`, BatchNorm included).
3. *Update the model and retrain* — fine-tune with the mask held in place; repeated in rounds
   by :func:`iterative_prune` (Han et al. 2015), or spread over training by
   :func:`gradual_sparsity` (Zhu & Gupta 2017).

:func:`magnitude_prune` also prunes a :class:`course_lib.models.StackedMLP` (each of its K
models with its own threshold), which is how chapter 3.2 runs every arm over five seeds.

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
from course_lib.models import StackedMLP

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types whose ``weight`` is pruned (biases are kept, as in Han et al. 2015)."""

_SCOPES = ("global", "layer")
"""``scope`` of :func:`magnitude_prune`: one threshold for all layers, or one per layer."""

# Modules that act on each unit (neuron / channel) separately: a unit removed before them is
# simply absent after them. Used by remove_neurons to follow a unit from layer to layer.
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PER_UNIT = (
    *_ACTIVATIONS, *_NORMS, nn.Identity, nn.Dropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
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
    """Bool tensor, True at the ``n`` smallest entries of each row of ``scores`` (1-D: of the
    vector). ``torch.topk`` picks them, exactly as ``torch.nn.utils.prune.L1Unstructured``
    does, so ties break the same way."""
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    if n > 0:
        chosen.scatter_(-1, torch.topk(scores, k=n, dim=-1, largest=False).indices, True)
    return chosen


def _amounts(amount, scope: str, n_layers: int) -> list[float]:
    """One amount per layer: ``amount`` itself for every layer, or with ``scope="layer"`` a
    list of ``n_layers`` amounts."""
    if isinstance(amount, (list, tuple)):
        if scope != "layer":
            raise ValueError(f"amount must be one number with scope={scope!r} (a list of "
                             f"per-layer amounts needs scope='layer'), got {amount!r}")  # fmt: skip
        if len(amount) != n_layers:
            raise ValueError(f"amount must be one number or a list of {n_layers} per-layer "
                             f"amounts, got {len(amount)} amounts")  # fmt: skip
        return [_checks.fraction(f"amount[{i}]", a, closed=True) for i, a in enumerate(amount)]
    return [_checks.fraction("amount", amount, closed=True)] * n_layers


def magnitude_prune(model: nn.Module, amount, scope: str = "global") -> nn.Module:
    """Unstructured L1-magnitude pruning of every Linear / Conv weight, in place (chapter 3.2).

    Importance of a weight is ``|w|``. With ``scope="global"`` the ``round(amount · N)``
    weights of smallest ``|w|`` among *all* ``N`` prunable weights are zeroed (so layers end
    with different sparsities); with ``scope="layer"`` each layer loses ``round(amount · n_l)``
    of its own ``n_l`` weights, and ``amount`` may then be a list, one amount per prunable
    layer (e.g. chosen from a per-layer sensitivity scan). The zeros are exactly those of
    ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount)`` and
    ``l1_unstructured`` on an unpruned model.

    ``amount`` is the *total* target sparsity of the weights in scope, not the fraction of the
    remaining ones; a weight pruned once stays pruned (masks only lose ones), so calling with
    an ``amount`` below the current sparsity changes nothing. The masks stay applied through
    any later training (see the module docstring); :func:`make_permanent` bakes them in.

    ``model`` may be a :class:`~course_lib.models.StackedMLP`: each of its K models is pruned
    on its own (its own threshold), as if it were pruned alone; its masks are updated in place.
    Returns ``model``.
    """
    _checks.one_of("scope", scope, _SCOPES)
    if isinstance(model, StackedMLP):
        return _prune_stack(model, amount, scope)
    layers = prunable_layers(model)
    amounts = _amounts(amount, scope, len(layers))
    if scope == "global":
        scores = torch.cat([m.weight.detach().abs().reshape(-1) for _, m in layers])
        prune_flat = _smallest(scores, round(amounts[0] * scores.numel()))
        pieces = torch.split(prune_flat, [m.weight.numel() for _, m in layers])
    else:
        pieces = [
            _smallest(m.weight.detach().abs().reshape(-1), round(a * m.weight.numel()))
            for (_, m), a in zip(layers, amounts, strict=True)
        ]
    for (_, module), pruned in zip(layers, pieces, strict=True):
        keep = ~pruned.reshape(module.weight.shape) & get_mask(module)
        with torch.no_grad():
            _set_mask(module, keep)
    return model


@torch.no_grad()
def _prune_stack(stack: StackedMLP, amount, scope: str) -> StackedMLP:
    """:func:`magnitude_prune` of each of the K models of ``stack`` (rows of ``(K, N)``)."""
    weights, masks = stack.effective_weights(), stack.masks
    amounts = _amounts(amount, scope, len(weights))
    k = stack.k
    if scope == "global":
        scores = torch.cat([w.abs().reshape(k, -1) for w in weights], dim=1)
        prune_flat = _smallest(scores, round(amounts[0] * scores.shape[1]))
        pieces = torch.split(prune_flat, [w[0].numel() for w in weights], dim=1)
    else:
        pieces = [_smallest(w.abs().reshape(k, -1), round(a * w[0].numel()))
                  for w, a in zip(weights, amounts, strict=True)]  # fmt: skip
    for mask, pruned in zip(masks, pieces, strict=True):
        mask &= ~pruned.reshape(mask.shape)
    return stack


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """The N:M semi-structured pattern (chapter 3.2): in every group of ``m`` consecutive
    weights along the last (input) dimension keep the ``n`` of largest ``|w|`` — 2:4 keeps half,
    in a layout NVIDIA's sparse tensor cores (compute capability ≥ 8.0) multiply at up to twice
    the dense speed (Mishra et al. 2021; ``torch.sparse.to_sparse_semi_structured``). Returns a
    bool mask of ``weight``'s shape; the last dimension must be a multiple of ``m``. Ties keep
    the earlier weight."""
    _checks.tensor("weight", weight, floating=True)
    m = _checks.positive_int("m", m)
    n = _checks.integer("n", n, 0, m)
    if weight.ndim == 0 or weight.shape[-1] % m:
        raise ValueError(f"weight's last dimension must be a multiple of m={m}, "
                         f"got shape {tuple(weight.shape)}")  # fmt: skip
    groups = weight.detach().abs().reshape(*weight.shape[:-1], -1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    if n:
        order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
        keep.scatter_(-1, order[..., :n], True)
    return keep.reshape(weight.shape)


def nm_prune(model: nn.Module, n: int = 2, m: int = 4) -> nn.Module:
    """N:M pruning of every Linear layer's weight, in place (chapter 3.2): the mask of
    :func:`nm_mask` ANDed into the layer's (or, for a StackedMLP, each model's) mask.
    Returns ``model``."""
    if isinstance(model, StackedMLP):
        with torch.no_grad():
            for w, mask in zip(model.effective_weights(), model.masks, strict=True):
                mask &= nm_mask(w, n, m)
        return model
    for _, layer in prunable_layers(model):
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"model must hold only Linear prunable layers for N:M pruning, got "
                            f"{type(layer).__name__}")  # fmt: skip
        with torch.no_grad():
            _set_mask(layer, nm_mask(layer.weight, n, m) & get_mask(layer))
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


def gradual_sparsity(step: int, target: float, begin: int, end: int,
                     initial: float = 0.0) -> float:  # fmt: skip
    """Zhu & Gupta's (2017) gradual schedule: the sparsity at training step ``step``,

    ``s_t = s_f + (s_i − s_f) · (1 − (t − t_0) / (t_1 − t_0))³``  for ``t_0 ≤ t ≤ t_1``,

    ``s_i`` (``initial``) before ``t_0`` (``begin``) and ``s_f`` (``target``) after ``t_1``
    (``end``): pruning is fast at first, while many redundant weights remain, and slows down as
    the target nears. Prune to ``gradual_sparsity(t, ...)`` every few steps while training
    (chapter 3.2)."""
    step = _checks.integer("step", step, 0)
    target = _checks.fraction("target", target, closed=True)
    initial = _checks.fraction("initial", initial, closed=True)
    begin = _checks.integer("begin", begin, 0)
    end = _checks.integer("end", end, begin + 1)
    if step <= begin:
        return initial
    if step >= end:
        return target
    return target + (initial - target) * (1.0 - (step - begin) / (end - begin)) ** 3


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


_IMPORTANCE = ("l1", "activation", "taylor", "bn_scale", "random")


def _hidden(modules: list[nn.Module]) -> list[int]:
    """Indices of the hidden Linear / Conv layers (every prunable layer but the last)."""
    return [i for i, m in enumerate(modules) if isinstance(m, PRUNABLE)][:-1]


def _scored_module(modules: list[nn.Module], i: int) -> int:
    """Index of the module whose output scores the units of layer ``i``: the last activation
    before the next Linear / Conv / Flatten (after a BatchNorm, if any), else layer ``i``."""
    j = i
    for k in range(i + 1, len(modules)):
        if isinstance(modules[k], (*PRUNABLE, nn.Flatten)):
            break
        if isinstance(modules[k], _ACTIVATIONS):
            j = k
    return j


def _norm_after(modules: list[nn.Module], i: int) -> nn.Module | None:
    """The BatchNorm that normalises layer ``i``'s units (before the next Linear / Conv)."""
    for k in range(i + 1, len(modules)):
        if isinstance(modules[k], (*PRUNABLE, nn.Flatten)):
            return None
        if isinstance(modules[k], _NORMS):
            return modules[k]
    return None


def _outputs(modules, x, keep: set[int]) -> dict[int, torch.Tensor]:
    """Forward ``x`` through ``modules``; the outputs of the modules whose index is in ``keep``."""
    kept = {}
    for j, m in enumerate(modules):
        x = m(x)
        if j in keep:
            kept[j] = x
    return kept


def _per_unit_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=[d for d in range(x.ndim) if d != 1])


def neuron_importance(
    model: nn.Module,
    importance: str = "l1",
    inputs: torch.Tensor | None = None,
    *,
    targets: torch.Tensor | None = None,
    include_bias: bool = False,
    generator: torch.Generator | None = None,
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
    - ``"taylor"``: the first-order Taylor estimate of how much the loss changes when the unit
      is removed (Molchanov et al. 2017), ``mean_n |Σ_p a_{j,p} · ∂L_n/∂a_{j,p}|`` with ``a``
      the scored output above, ``L_n`` example n's cross-entropy on ``targets`` and ``p`` the
      positions of a channel. For a Linear → ReLU unit, ``a_j ∂L/∂a_j = Σ_i W_{j,i} ∂L/∂W_{j,i}
      + b_j ∂L/∂b_j``: the sum of ``w · ∂L/∂w`` over the unit's parameters (Molchanov et al.
      2019's group criterion).
    - ``"bn_scale"``: ``|γ_j|`` of the BatchNorm that follows the layer — the network-slimming
      criterion (Liu et al. 2017), meaningful after training with an L1 penalty on ``γ``.
    - ``"random"``: uniform random scores from ``generator`` (the control every criterion
      must beat).

    Scores that need a forward pass are computed in eval mode (BatchNorm on its running
    statistics; the model's mode is restored). Returns one 1-D tensor per hidden layer (the
    last Linear / Conv layer is the output and is not listed).
    """
    _checks.one_of("importance", importance, _IMPORTANCE)
    _checks.flag("include_bias", include_bias)
    _checks.instance("generator", generator, torch.Generator, allow_none=True)
    modules = _chain(model)
    hidden = _hidden(modules)
    if importance == "l1":
        scores = []
        for i in hidden:
            w, b = modules[i].weight.detach(), modules[i].bias
            s = w.abs().reshape(w.shape[0], -1).sum(dim=1)
            scores.append(s + b.detach().abs() if include_bias and b is not None else s)
        return scores
    if importance == "random":
        return [torch.rand(modules[i].weight.shape[0], generator=generator) for i in hidden]
    if importance == "bn_scale":
        scores = []
        for i in hidden:
            norm = _norm_after(modules, i)
            if norm is None or norm.weight is None:
                raise ValueError(f"importance='bn_scale' needs a BatchNorm with a scale after "
                                 f"every hidden layer, got none after layer {i} "
                                 f"({type(modules[i]).__name__})")  # fmt: skip
            scores.append(norm.weight.detach().abs().clone())
        return scores
    _checks.tensor(f"inputs (needed for importance={importance!r})", inputs, floating=True)
    scored = {_scored_module(modules, i): i for i in hidden}
    was_training = model.training
    model.eval()
    try:
        if importance == "activation":
            with torch.no_grad():
                outs = _outputs(modules, inputs, set(scored))
            by_layer = {i: _per_unit_mean(outs[j].abs()) for j, i in scored.items()}
        else:  # taylor
            _checks.tensor("targets (needed for importance='taylor')", targets, ndim=1)
            if len(targets) != len(inputs) or targets.is_floating_point():
                raise ValueError(f"targets must hold one class index per input "
                                 f"({len(inputs)}), got {tuple(targets.shape)} of dtype "
                                 f"{targets.dtype}")  # fmt: skip
            with torch.enable_grad():
                last = len(modules) - 1  # the model's output: never a scored module
                outs = _outputs(modules, inputs, set(scored) | {last})
                logits = outs.pop(last)
                loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
                order = list(scored)
                grads = torch.autograd.grad(loss, [outs[j] for j in order])
            by_layer = {}
            for j, g in zip(order, grads, strict=True):
                a = outs[j].detach()
                per_example = (a * g).reshape(a.shape[0], a.shape[1], -1).sum(-1)  # (n, units)
                by_layer[scored[j]] = per_example.abs().mean(0)
    finally:
        model.train(was_training)
    return [by_layer[i] for i in hidden]


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


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A BatchNorm with only the ``keep`` entries of its scale, shift and running statistics."""
    new = copy.deepcopy(norm)
    with torch.no_grad():
        for name in ("weight", "bias"):
            value = getattr(new, name)
            if value is not None:
                setattr(new, name, nn.Parameter(value.detach()[keep].clone()))
        for name in ("running_mean", "running_var"):
            value = getattr(new, name)
            if value is not None:
                setattr(new, name, value[keep].clone())
    new.num_features = len(keep)
    return new


_STRUCT_SCOPES = ("layer", "global")


def _keep_sets(scores: list[torch.Tensor], amount: float, scope: str) -> list[torch.Tensor]:
    """Sorted indices of the units each hidden layer keeps (at least one per layer)."""
    if scope == "layer":
        keeps = []
        for s in scores:
            n_keep = max(1, s.numel() - round(amount * s.numel()))
            keeps.append(torch.sort(torch.topk(s, k=n_keep, largest=True).indices).values)
        return keeps
    flat = torch.cat(scores)
    removed = _smallest(flat, round(amount * flat.numel()))
    keeps = []
    for s, gone in zip(scores, torch.split(removed, [s.numel() for s in scores]), strict=True):
        kept = torch.nonzero(~gone).flatten()
        keeps.append(kept if kept.numel() else s.argmax().reshape(1))
    return keeps


def remove_neurons(
    model: nn.Module,
    amount: float,
    importance: str = "l1",
    inputs: torch.Tensor | None = None,
    *,
    targets: torch.Tensor | None = None,
    include_bias: bool = False,
    scope: str = "layer",
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Structured pruning: a smaller *dense* copy of ``model`` without its least important
    units — neurons of a Linear layer, channels (filters) of a Conv layer (chapter 3.2).

    ``scope="layer"``: each hidden layer loses ``round(amount · n_l)`` of its ``n_l`` units;
    ``"global"``: the ``round(amount · N)`` lowest scores among all ``N`` hidden units go, one
    threshold for every layer (as network slimming does with ``|γ|``; scores must then be
    comparable across layers). At least one unit per layer is kept. Importance
    (``importance``, ``inputs``, ``targets``, ``include_bias``, ``generator``): see
    :func:`neuron_importance`; the default ranks by the L1 norm of the incoming weights, as
    Li et al. 2017 do.

    A unit is removed with everything that belongs to it: its row in its own layer (weights and
    bias), its entries in the BatchNorm that follows (``γ``, ``β``, running mean and variance),
    and its column(s) in the next layer; after a ``Flatten`` a channel owns a contiguous block
    of ``height × width`` inputs of the next Linear. If the removed units' outputs were already
    zero — incoming weights and bias zero, or after a BatchNorm ``γ = β = 0`` (in eval mode) —
    the smaller model computes the same function. ``model`` must be an ``nn.Sequential``
    (``course_lib.models.MLP``, ``SmallCNN``) with at least one hidden Linear / Conv layer; it
    is not modified; masks are baked in. The result is an ``nn.Sequential`` with the same
    layer order.
    """
    amount = _checks.fraction("amount", amount, closed=True)
    _checks.one_of("scope", scope, _STRUCT_SCOPES)
    prunable_layers(model)
    modules = _chain(model)
    layer_idx = [i for i, m in enumerate(modules) if isinstance(m, PRUNABLE)]
    if len(layer_idx) < 2:
        raise ValueError(
            "model must have at least one hidden Linear / Conv layer (a unit that can be "
            f"removed; the last layer is the output), got {type(model).__name__} with "
            f"{len(layer_idx)} prunable layer"
        )
    scores = neuron_importance(model, importance, inputs, targets=targets,
                               include_bias=include_bias, generator=generator)  # fmt: skip
    keeps = dict(zip(layer_idx[:-1], _keep_sets(scores, amount, scope), strict=True))

    new_modules: list[nn.Module] = []
    units = None  # units of the previous prunable layer that survive, if any
    keep_in = None  # the same units as inputs of the next layer (after a Flatten: blocks)
    channels = None  # number of channels before a Flatten (to map channel → inputs)
    for i, m in enumerate(modules):
        if isinstance(m, PRUNABLE):
            new_modules.append(_slice_layer(m, keep_out=keeps.get(i), keep_in=keep_in))
            units = keep_in = keeps.get(i)
            channels = m.weight.shape[0]
        elif isinstance(m, _NORMS) and units is not None:
            if keep_in is not units:
                raise TypeError("remove_neurons cannot follow units through a BatchNorm "
                                "placed after a Flatten")  # fmt: skip
            new_modules.append(_slice_norm(m, units))
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
