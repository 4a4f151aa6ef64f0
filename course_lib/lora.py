"""Low-rank adaptation, LoRA (Hu et al. 2022), for fine-tuning cheaply (chapter 5.2).

A pretrained ``Linear`` layer ``y = W x + b`` is frozen and a low-rank update is learned
beside it::

    y = W x + b + (α / r) · B A x        A: r × in,  B: out × r

``A`` starts random and ``B`` at zero, so the adapted model starts *exactly* as the base model.
Only ``A`` and ``B`` are trained: ``r · (in + out)`` parameters per layer instead of
``in · out``. After training, :func:`merge_lora` folds ``(α/r) · B A`` into ``W``: the merged
model is a plain model again, as fast as the base one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from course_lib import _checks


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``rank`` update scaled by ``alpha / rank``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        _checks.instance("base", base, nn.Linear, "a torch.nn.Linear")
        self.rank = _checks.positive_int("rank", rank)
        if self.rank > min(base.in_features, base.out_features):
            raise ValueError(f"rank must be <= min(in, out) = "
                             f"{min(base.in_features, base.out_features)}, got {rank}")  # fmt: skip
        self.alpha = _checks.positive("alpha", alpha)
        self.scaling = self.alpha / self.rank
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(self.rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises W

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """``(α / r) · B A``, the update to ``W``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * ((x @ self.lora_A.T) @ self.lora_B.T)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def linear_names(model: nn.Module) -> list[str]:
    """Qualified names of every ``nn.Linear`` in ``model`` (candidates for ``targets``)."""
    _checks.module("model", model)
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def add_lora(model: nn.Module, rank: int, alpha: float, targets: Iterable[str]) -> nn.Module:
    """Wrap the ``nn.Linear`` layers named in ``targets`` (qualified names as
    ``model.named_modules()`` gives them, e.g. ``"blocks.0.attn.qkv"``) in :class:`LoRALinear`,
    in place, and freeze every other parameter of ``model``; returns ``model``.

    Afterwards the trainable parameters are exactly the adapters: ``rank · (in + out)`` per
    adapted layer. At initialisation the outputs equal the base model's (``B = 0``).
    """
    _checks.module("model", model)
    rank = _checks.positive_int("rank", rank)
    alpha = _checks.positive("alpha", alpha)
    if isinstance(targets, str) or not isinstance(targets, Iterable):
        raise TypeError(f"targets must be a list of module names, got {type(targets).__name__}")
    targets = list(dict.fromkeys(targets))
    if not targets:
        raise ValueError("targets must name at least one nn.Linear, got none")
    modules = dict(model.named_modules())
    for name in targets:
        if not isinstance(name, str) or name not in modules:
            raise ValueError(f"targets must be names of model.named_modules(), got {name!r} "
                             f"(the Linear layers are {linear_names(model)[:8]}...)")  # fmt: skip
        if not isinstance(modules[name], nn.Linear):
            raise ValueError(f"targets must name nn.Linear layers, got {name!r}, "
                             f"a {type(modules[name]).__name__}")  # fmt: skip
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in targets:
        _set_submodule(model, name, LoRALinear(modules[name], rank, alpha))
    return model


def lora_parameters(model: nn.Module) -> int:
    """Number of adapter parameters (``A`` and ``B`` of every :class:`LoRALinear`)."""
    _checks.module("model", model)
    return sum(m.lora_A.numel() + m.lora_B.numel() for m in model.modules()
               if isinstance(m, LoRALinear))  # fmt: skip


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` of ``model`` by a plain ``nn.Linear`` with weight
    ``W + (α/r) · B A`` (in place; returns ``model``). The outputs do not change, up to
    float rounding. The merged weight is a new tensor, so a weight the base layer shared
    (a tied embedding) is left untouched; it stays frozen like the base weight was."""
    _checks.module("model", model)
    adapted = [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not adapted:
        raise ValueError("model must hold at least one LoRALinear (call add_lora first)")
    for name, module in adapted:
        base = module.base
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)  # fmt: skip
        merged.weight.copy_(base.weight + module.delta_weight())
        if base.bias is not None:
            merged.bias.copy_(base.bias)
        merged.requires_grad_(base.weight.requires_grad)
        _set_submodule(model, name, merged)
    return model
