"""Measuring a model's cost and shrinking it (chapter 1; compression in chapter 3.4).

Chapter 1: parameters, FLOPs, latency (timed by :mod:`course_lib.timing`). Chapters 3.4 and 7:
the Pareto front of cost against accuracy (:func:`pareto_front`). Chapter 3.4: non-zero
counts, serialized size, int8 quantization written from the formula (:func:`quantize_int8`)
and PyTorch's int8 kernels (:func:`quantize_dynamic_int8`).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from course_lib import _checks, timing
from course_lib.timing import Timing


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters, ``sum_p numel(p)`` (optionally only those with grad).

    The int8 weights and biases of dynamically quantized Linear layers (chapter 3.4) are
    counted too, although PyTorch stores them as packed buffers, not ``nn.Parameter`` s; they
    are never trainable, so ``trainable_only=True`` leaves them out.
    """
    _checks.module("model", model)
    _checks.flag("trainable_only", trainable_only)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if not trainable_only:
        total += sum(t.numel() for t in _quantized_tensors(model))
    return total


def _quantized_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Weights (dequantized) and biases of the dynamic int8 Linear layers of ``model``."""
    tensors = []
    for module in model.modules():
        if _is_dynamic_int8_linear(module):
            tensors.append(module.weight().dequantize())
            if module.bias() is not None:
                tensors.append(module.bias())
    return tensors


def flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Floating-point operations of one forward pass on ``example_input``, counted by
    ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs: a ``Linear(m, n)`` on a
    batch of ``b`` costs ``2·b·m·n``)."""
    _checks.module("model", model)
    _checks.tensor("example_input", example_input)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example_input)
    return int(counter.get_total_flops())


def measure_latency(
    model: nn.Module, example_input: torch.Tensor, warmup: int = 10, repeats: int = 50
) -> Timing:
    """Seconds per forward pass ``model(example_input)``: median and quartiles of ``repeats``
    timed calls after ``warmup`` untimed ones, in eval mode under ``torch.inference_mode``.

    Timed by :func:`course_lib.timing.measure` (``torch.utils.benchmark.Timer``): the device is
    synchronised before the clock is read, since GPU kernels run asynchronously, and the
    median resists the noise of a shared machine. To compare two models, time them
    interleaved with :func:`course_lib.timing.interleaved`.
    """
    _checks.module("model", model)
    _checks.tensor("example_input", example_input)
    warmup = _checks.integer("warmup", warmup, 0)
    repeats = _checks.integer("repeats", repeats, 3)
    with timing.inference(model):
        return timing.measure(lambda: model(example_input), warmup=warmup, repeats=repeats,
                              device=example_input.device)  # fmt: skip


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the Pareto-optimal points among ``(cost, score)`` pairs such as (size or
    latency, accuracy) of compressed models (chapters 3.4, 7): no other point has a cost
    ``<=`` and a score ``>=`` with at least one strict. Sorted by increasing cost."""
    if len(costs) != len(scores):
        raise ValueError(f"costs and scores must have the same length, got {len(costs)} and "
                         f"{len(scores)}")  # fmt: skip
    front = []
    for i, (c, s) in enumerate(zip(costs, scores, strict=True)):
        dominated = any(
            c2 <= c and s2 >= s and (c2 < c or s2 > s)
            for j, (c2, s2) in enumerate(zip(costs, scores, strict=True))
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: costs[i])


# --- chapter 3.4: size, sparsity and int8 quantization ----------------------------------------


def count_nonzero(model: nn.Module) -> int:
    """Number of parameter entries that are not exactly zero, ``sum_p ||p||_0``.

    After pruning (chapter 3.2) a weight is ``w = w_orig ⊙ mask``, stored either as
    ``weight_orig`` plus a ``weight_mask`` buffer (``torch.nn.utils.prune``) or as a
    parametrization (``torch.nn.utils.parametrize``); the *effective* weight is counted then,
    not the stored original. ``count_parameters - count_nonzero`` is what pruning removed.
    Dynamically quantized int8 Linear layers count their non-zero int8 weights and biases.
    """
    _checks.module("model", model)
    total = 0
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # its ``original`` is counted through the module that owns it
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("_orig") and hasattr(module, name[: -len("_orig")]):
                param = getattr(module, name[: -len("_orig")])  # pruned: w_orig * mask
            total += int(torch.count_nonzero(param.detach()))
        if parametrize.is_parametrized(module):
            for name in module.parametrizations:
                total += int(torch.count_nonzero(getattr(module, name).detach()))
    return total + sum(int(torch.count_nonzero(t)) for t in _quantized_tensors(model))


def model_size_bytes(model: nn.Module) -> int:
    """Size in bytes of ``torch.save(model.state_dict())``: what a checkpoint costs on disk.

    It counts every tensor at its real width (4 bytes per float32, 1 per int8) plus the small
    overhead of the file format, so an int8-quantized model (chapter 3.4) shows its true saving.
    """
    _checks.module("model", model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


class QuantizedTensor(NamedTuple):
    """Symmetric per-channel int8 quantization of a tensor (chapter 3.4).

    ``values`` are int8 in ``[-127, 127]``; ``scale`` holds one float32 per slice along ``axis``
    (shaped to broadcast against ``values``), so that ``w ≈ values · scale``.
    """

    values: torch.Tensor
    scale: torch.Tensor
    axis: int

    @property
    def nbytes(self) -> int:
        """Storage of the int8 values plus the float32 scales."""
        return self.values.numel() * self.values.element_size() + self.scale.numel() * 4


def quantize_int8(weight: torch.Tensor, axis: int = 0) -> QuantizedTensor:
    """Symmetric per-channel int8 quantization, written from the formula (Jacob et al. 2018).

    For each slice ``c`` along ``axis`` (each output row of a ``Linear`` weight by default)::

        s_c = max |w_c| / 127          q = clamp(round(w / s_c), -127, 127)      (int8)

    The zero point is 0 (symmetric), and ``-128`` is never used so that ``q`` and ``-q`` are both
    representable. Dequantizing gives ``ŵ = q · s_c`` and, because rounding moves a value by at
    most half a step, ``|w - ŵ| ≤ s_c / 2`` for every entry. A slice that is all zeros gets
    ``s_c = 1`` (any scale represents it exactly).
    """
    _checks.tensor("weight", weight, floating=True, nonempty=True)
    if weight.ndim == 0:
        raise ValueError("weight must have at least one dimension, got a 0-d tensor")
    axis = _checks.integer("axis", axis, -weight.ndim, weight.ndim - 1)
    if not torch.isfinite(weight).all():
        raise ValueError("weight must contain only finite values, got NaN or ±inf")
    axis = axis % weight.ndim
    w = weight.detach().float()
    other_dims = [d for d in range(w.ndim) if d != axis]
    max_abs = w.abs().amax(dim=other_dims, keepdim=True) if other_dims else w.abs()
    scale = torch.where(max_abs > 0, max_abs / 127.0, torch.ones_like(max_abs))
    values = torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8)
    return QuantizedTensor(values=values, scale=scale, axis=axis)


def dequantize(quantized: QuantizedTensor) -> torch.Tensor:
    """Float32 approximation ``ŵ = q · s`` of a tensor quantized by :func:`quantize_int8`."""
    _checks.instance("quantized", quantized, QuantizedTensor)
    return quantized.values.float() * quantized.scale


def fake_quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``Linear`` and ``Conv`` weights are replaced by
    ``dequantize(quantize_int8(w))``: same float32 arithmetic, int8 *precision*.

    This shows what rounding every weight to 255 levels per output channel does to accuracy,
    separately from any speed gain (which needs real int8 kernels: :func:`quantize_dynamic_int8`).
    """
    _checks.module("model", model)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for module in clone.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                module.weight.copy_(dequantize(quantize_int8(module.weight, axis=0)))
    return clone


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by PyTorch's *dynamic* int8 Linear
    (chapter 3.4): weights stored as int8, activations quantized on the fly per batch, the
    matrix product run by int8 CPU kernels (fbgemm / oneDNN), the result returned in float32.

    It uses ``torch.ao.quantization.quantize_dynamic``. That API prints a deprecation warning
    in recent PyTorch releases (its successor is the separate ``torchao`` package); this course
    keeps it on purpose because on a CPU without int8 matrix instructions torchao's eager int8
    path was measured *slower* than float32 while this one is faster
    (``benchmarks/compress_bench.py`` measures both). Those two known warnings are silenced
    here, and the chapter explains them. If a future PyTorch removes the API, this raises
    ``RuntimeError`` rather than silently returning an unquantized model. CPU only.
    """
    _checks.module("model", model)
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError(
            "model must be on the CPU (dynamic int8 kernels are CPU kernels), got parameters on "
            f"{sorted({p.device.type for p in model.parameters()})}"
        )
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as err:  # pragma: no cover - depends on the installed PyTorch
        raise RuntimeError(
            "torch.ao.quantization.quantize_dynamic is not available in this PyTorch "
            f"({torch.__version__}); use torchao's quantize_ API instead"
        ) from err
    clone = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated")
        quantized = quantize_dynamic(clone, {nn.Linear}, dtype=torch.qint8)
    if not any(_is_dynamic_int8_linear(m) for m in quantized.modules()):
        raise RuntimeError("quantize_dynamic found no nn.Linear layer to quantize")
    return quantized


def _is_dynamic_int8_linear(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic") and hasattr(
        module, "weight"
    )


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes taken by the weight matrices of the model's ``Linear`` layers (biases excluded).

    A float ``nn.Linear`` costs ``numel · element_size`` (4 bytes per float32 weight); a dynamic
    int8 Linear from :func:`quantize_dynamic_int8` costs 1 byte per weight plus its quantization
    parameters (one float32 scale and one int32 zero point per tensor or per channel).
    """
    _checks.module("model", model)
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
        elif _is_dynamic_int8_linear(module):
            w = module.weight()
            per_tensor = w.qscheme() == torch.per_tensor_affine
            groups = 1 if per_tensor else w.q_per_channel_scales().numel()
            total += w.numel() * w.element_size() + groups * 8
    return total
