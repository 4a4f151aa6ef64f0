"""Measuring a model's cost and shrinking it (chapter 1; compression in chapter 3.4.1).

Chapter 1: parameters, FLOPs, latency (timed by :mod:`course_lib.timing`). Chapters 3.4 and 7:
the Pareto front of cost against accuracy (:func:`pareto_front`). Chapter 3.4.1, written from
the formulas and tested against PyTorch's own quantization:

- affine (zero-point) and symmetric quantization, per tensor or per channel
  (:func:`quantize_affine`, :func:`quantize_symmetric`, :func:`quantize_int8`);
- fake quantization with the straight-through estimator (:func:`fake_quantize`) and the
  fake-quantized copy of a model used for 4-bit post-training quantization and for
  quantization-aware training (:func:`fake_quant_model`);
- static post-training quantization with calibration and integer-only inference
  (:func:`calibrate`, :func:`quantize_static`);
- k-means (codebook) quantization (:func:`kmeans_quantize`) and low-rank factorization
  (:func:`low_rank_linear`, :func:`low_rank`);
- PyTorch's int8 kernels: ``torch.ao`` dynamic and static (:func:`quantize_dynamic_int8`,
  :func:`quantize_static_int8`) and their successors in ``torchao`` (:func:`quantize_torchao_int8`,
  :func:`quantize_pt2e_int8`, lowered by :func:`compile_int8`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from course_lib import _checks, timing
from course_lib.timing import Timing


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters, ``sum_p numel(p)`` (optionally only those with grad).

    The int8 weights and biases of quantized layers (chapter 3.4.1: PyTorch's dynamic int8
    Linear, :func:`quantize_static`'s integer layers) are counted too, although they are
    stored as packed or integer buffers, not ``nn.Parameter`` s; they are never trainable, so
    ``trainable_only=True`` leaves them out.
    """
    _checks.module("model", model)
    _checks.flag("trainable_only", trainable_only)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if not trainable_only:
        total += sum(t.numel() for t in _quantized_tensors(model))
    return total


def _quantized_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Weights (dequantized) and biases of the int8 layers of ``model`` that hold them outside
    ``parameters()``: dynamic int8 Linear layers and :class:`StaticInt8Layer` s."""
    tensors = []
    for module in model.modules():
        if _is_dynamic_int8_linear(module):
            tensors.append(module.weight().dequantize())
            if module.bias() is not None:
                tensors.append(module.bias())
        elif isinstance(module, StaticInt8Layer):
            tensors += [module.weight, module.bias]
    return tensors


_AO_QUANTIZED = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
_WEIGHTLESS = {"Quantize", "DeQuantize", "LinearPackedParams", "EmbeddingPackedParams",
               "FloatFunctional", "FXFloatFunctional", "QFunctional", "ReLU6", "Hardswish",
               "ELU", "LeakyReLU", "Sigmoid", "Softmax", "Dropout", "Threshold", "Tanh"}


def _analytic_flops(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int | None:
    """``2 × multiply-adds`` of one call of a Linear-like or Conv2d-like module, from its shapes
    (``None`` if it is neither)."""
    weight = getattr(module, "weight", None)
    weight = weight() if callable(weight) else weight
    if weight is None or not hasattr(weight, "shape"):
        return None
    if weight.ndim == 2:  # Linear: (out, in); every output element is `in` multiply-adds
        return 2 * output.numel() * weight.shape[1]
    if weight.ndim == 4:  # Conv2d: (out, in / groups, kh, kw) per output element
        return 2 * output.numel() * weight[0].numel()
    return None


def flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Floating-point operations of one forward pass on ``example_input``, counted by
    ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs: a ``Linear(m, n)`` on a
    batch of ``b`` costs ``2·b·m·n``).

    Quantized layers run integer kernels that the counter does not see (chapter 3.4.1): for
    PyTorch's int8 Linear and Conv2d modules (``torch.ao`` dynamic and static) and for Linear or
    Conv2d layers whose weight is a tensor subclass (``torchao``), their matrix products are
    counted from the shapes instead — the same ``2·b·m·n``, now integer multiply-adds. A model
    with another quantized module raises ``ValueError`` rather than return a count that
    leaves work out.
    """
    _checks.module("model", model)
    _checks.tensor("example_input", example_input)
    counter = FlopCounterMode(display=False)
    analytic: dict[str, int] = {}
    hooks = []
    root = type(model).__name__
    for name, module in model.named_modules():
        quantized = type(module).__module__.startswith(_AO_QUANTIZED)
        subclass = isinstance(module, (nn.Linear, nn.Conv2d)) and type(module.weight) not in (
            torch.Tensor, nn.Parameter)  # fmt: skip
        if quantized and not hasattr(module, "weight"):
            if type(module).__name__ in _WEIGHTLESS:
                continue  # quantize / dequantize stubs, packed storage, element-wise ops
            raise ValueError(f"model must hold layers whose FLOPs can be counted, got the "
                             f"quantized module {name!r} ({type(module).__name__})")  # fmt: skip
        if not (quantized or subclass):
            continue
        kind = type(module).__name__
        if quantized and not ("Linear" in kind or "Conv" in kind):
            raise ValueError(f"model must hold layers whose FLOPs can be counted, got the "
                             f"quantized module {name!r} ({kind})")  # fmt: skip

        def hook(module, args, output, name=name):
            count = _analytic_flops(module, args[0], output)
            if count is None:
                raise ValueError(f"model must hold layers whose FLOPs can be counted, got the "
                                 f"quantized module {name!r} ({type(module).__name__})")
            analytic[name] = analytic.get(name, 0) + count

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad(), counter:
            model(example_input)
    finally:
        for handle in hooks:
            handle.remove()
    counted = counter.get_flop_counts()
    total = int(counter.get_total_flops())
    for name, count in analytic.items():
        seen = sum(counted.get(f"{root}.{name}" if name else root, {}).values())
        if seen == 0:  # an integer kernel the counter does not know
            total += count
    return total


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

    It counts every tensor at its real width (4 bytes per float32, 1 per int8) plus the
    overhead of the file format (a zip archive of pickled records: a few dozen bytes per
    tensor, more for the packed parameters of PyTorch's int8 layers), so an int8-quantized
    model (chapter 3.4.1) shows its true saving.
    """
    _checks.module("model", model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def cpu_int8_support() -> dict[str, str]:
    """What this CPU offers int8 kernels (chapter 3.4.1): PyTorch's vector capability
    (``torch.backends.cpu.get_cpu_capability()``), its quantized engine, and the x86 int8
    instructions named in ``/proc/cpuinfo`` (Linux; ``"unknown"`` elsewhere):

    - AVX2 ``vpmaddubsw``: u8 × s8 products summed in pairs into int16, which *saturates* when
      two products of full-range operands add up past 32767 — hence PyTorch's 7-bit activations
      (``reduce_range=True``) for fbgemm;
    - AVX-512 VNNI / AVX-VNNI ``vpdpbusd``: four u8 × s8 products summed straight into int32,
      in one instruction, without saturation;
    - AMX-INT8: tile matrix multiply of int8 blocks.
    """
    flags: set[str] | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break

    def has(*names: str) -> str:
        return "unknown" if flags is None else ("yes" if flags & set(names) else "no")

    return {
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "quantized engine": torch.backends.quantized.engine,
        "AVX2 (vpmaddubsw, int16 sums)": has("avx2"),
        "VNNI (vpdpbusd, int32 sums)": has("avx512_vnni", "avx_vnni"),
        "AMX-INT8 (tile matmul)": has("amx_int8"),
    }


# --- chapter 3.4.1: affine and symmetric quantization -----------------------------------------


class AffineQuantized(NamedTuple):
    """A tensor quantized to integers, ``x ≈ x̂ = s · (q − z)`` (chapter 3.4.1).

    ``values`` are the integers ``q``; ``scale`` (float32) and ``zero_point`` (int32) are 0-d
    tensors for one scale per tensor, or one per channel shaped to broadcast against
    ``values`` (size 1 on every axis but the channel axis), so that :meth:`dequantize` needs
    no axis.
    """

    values: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        """The float32 approximation ``x̂ = s · (q − z)``."""
        return (self.values.to(torch.float32) - self.zero_point) * self.scale


_EPS = torch.finfo(torch.float32).eps


def _check_bits(bits, low: int = 1, high: int = 16) -> int:
    return _checks.integer("bits", bits, low, high)


def _reduce_dims(x: torch.Tensor, axis: int | None) -> tuple[int, ...]:
    return tuple(range(x.ndim)) if axis is None else tuple(d for d in range(x.ndim) if d != axis)


def _quantizable(name: str, tensor, axis) -> tuple[torch.Tensor, int | None]:
    _checks.tensor(name, tensor, floating=True, nonempty=True)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must contain only finite values, got NaN or ±inf")
    if axis is not None:
        if tensor.ndim == 0:
            raise ValueError(f"axis must be None for a 0-d {name}, got {axis!r}")
        axis = _checks.integer("axis", axis, -tensor.ndim, tensor.ndim - 1) % tensor.ndim
    return tensor.detach().float(), axis


def affine_qparams(low: torch.Tensor | float, high: torch.Tensor | float, bits: int = 8
                   ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Scale and zero point that map the range ``[low, high]`` onto the integers
    ``0 … 2^bits − 1`` (asymmetric, 非对称; Jacob et al. 2018), as PyTorch's ``MinMaxObserver``
    computes them::

        low ← min(low, 0),  high ← max(high, 0)          (0 must be exactly representable)
        s = max((high − low) / (2^bits − 1), ε)         z = clamp(−round(low / s), 0, 2^bits − 1)

    so that the real 0 is the integer ``z`` exactly (zero padding and ReLU's zeros stay exact).
    Works element-wise on tensors of ranges (one per channel).
    """
    bits = _check_bits(bits)
    low = torch.as_tensor(low, dtype=torch.float32).clamp(max=0)
    high = torch.as_tensor(high, dtype=torch.float32).clamp(min=0)
    qmax = 2**bits - 1
    scale = torch.clamp((high - low) / qmax, min=_EPS)
    zero_point = torch.clamp(-torch.round(low / scale), 0, qmax).to(torch.int32)
    return scale, zero_point


def quantize_affine(tensor: torch.Tensor, bits: int = 8, axis: int | None = None
                    ) -> AffineQuantized:  # fmt: skip
    """Asymmetric (affine) quantization with a zero point, per tensor or per channel
    (chapter 3.4.1; Jacob et al. 2018 per tensor, Krishnamoorthi 2018 per channel).

    With ``[low, high]`` the range of the tensor (``axis=None``) or of each slice along
    ``axis``, and ``s, z = affine_qparams(low, high, bits)``::

        q = clamp(round(x / s) + z, 0, 2^bits − 1)          x̂ = s · (q − z)

    (``x / s`` computed as ``x · (1/s)`` in float32, and ``round`` half to even, as PyTorch
    does). Inside the range every error is at most half a step, ``|x − x̂| ≤ s / 2``. For 8 bits
    ``values`` (uint8) equal ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``'s
    ``int_repr()`` with the same scale and zero point. ``values`` are uint8 for up to 8 bits
    and int32 beyond (up to 16).
    """
    x, axis = _quantizable("tensor", tensor, axis)
    bits = _check_bits(bits)
    dims = _reduce_dims(x, axis)
    keep = axis is not None
    low = x.amin(dim=dims, keepdim=keep) if dims else x
    high = x.amax(dim=dims, keepdim=keep) if dims else x
    scale, zero_point = affine_qparams(low, high, bits)
    q = torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, 0, 2**bits - 1)
    return AffineQuantized(q.to(torch.uint8 if bits <= 8 else torch.int32), scale, zero_point)


def quantize_symmetric(tensor: torch.Tensor, bits: int = 8, axis: int | None = None
                       ) -> AffineQuantized:  # fmt: skip
    """Symmetric quantization (对称量化: zero point 0), per tensor or per channel along ``axis``
    (chapter 3.4.1; the scheme for weights in Krishnamoorthi 2018 and Nagel et al. 2021)::

        Q = 2^(bits−1) − 1        s = max |x| / Q        q = clamp(round(x / s), −Q, Q)

    The grid is symmetric around 0 (``−128`` is not used at 8 bits, so ``q`` and ``−q`` are
    both representable) and products need no zero-point correction; the price is that a
    tensor whose values are all ``≥ 0`` (a ReLU's output) uses only half of the levels.
    ``values`` are int8 for up to 8 bits, int32 beyond; ``zero_point`` is 0.
    """
    x, axis = _quantizable("tensor", tensor, axis)
    bits = _check_bits(bits, 2)
    dims = _reduce_dims(x, axis)
    qmax = 2 ** (bits - 1) - 1
    max_abs = x.abs().amax(dim=dims, keepdim=axis is not None) if dims else x.abs()
    # the smallest normal float as the floor: every non-zero slice, however small, uses ±Q
    scale = torch.clamp(max_abs / qmax, min=torch.finfo(torch.float32).tiny)
    q = torch.clamp(torch.round(x * (1.0 / scale)), -qmax, qmax)
    values = q.to(torch.int8 if bits <= 8 else torch.int32)
    return AffineQuantized(values, scale, torch.zeros_like(scale, dtype=torch.int32))


class QuantizedTensor(NamedTuple):
    """Symmetric per-channel int8 quantization of a tensor (chapter 3.4.1).

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
    """Symmetric per-channel int8 quantization of a weight, written from the formula
    (Krishnamoorthi 2018; Nagel et al. 2021): :func:`quantize_symmetric` at 8 bits with one
    scale per slice along ``axis`` (each output row of a ``Linear`` weight by default)::

        s_c = max |w_c| / 127          q = clamp(round(w / s_c), -127, 127)      (int8)

    The zero point is 0, and ``-128`` is never used so that ``q`` and ``-q`` are both
    representable. Dequantizing gives ``ŵ = q · s_c`` and, because rounding moves a value by at
    most half a step, ``|w - ŵ| ≤ s_c / 2`` for every entry. A slice that is all zeros gets
    the smallest scale (any scale represents it exactly).
    """
    _checks.tensor("weight", weight, floating=True, nonempty=True)
    if weight.ndim == 0:
        raise ValueError("weight must have at least one dimension, got a 0-d tensor")
    axis = _checks.integer("axis", axis, -weight.ndim, weight.ndim - 1)
    if not torch.isfinite(weight).all():
        raise ValueError("weight must contain only finite values, got NaN or ±inf")
    axis = axis % weight.ndim
    q = quantize_symmetric(weight, 8, axis)
    return QuantizedTensor(values=q.values, scale=q.scale, axis=axis)


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


# --- chapter 3.4.1: fake quantization and the straight-through estimator ---------------------


def fake_quantize(x: torch.Tensor, scale, zero_point, quant_min: int, quant_max: int
                  ) -> torch.Tensor:  # fmt: skip
    """Quantize and dequantize in one step, ``x̂ = s · (clamp(round(x / s) + z, q_min, q_max) − z)``,
    with the straight-through estimator (STE, 直通估计器; Bengio et al. 2013) for the gradient
    (chapter 3.4.1).

    ``round`` has derivative 0 almost everywhere, which would stop training; the STE treats it
    as the identity, so ``∂x̂/∂x = 1`` where ``x`` falls inside the integer range and ``0``
    where it is clipped. Written with ``detach``: the forward value is ``x̂``, and only the
    term ``(x − x.detach()) · inside``, which is 0, carries the gradient. ``scale`` and
    ``zero_point`` get no gradient. The argument order and the results — values and gradient
    — are those of ``torch.fake_quantize_per_tensor_affine`` (a number ``scale`` and int
    ``zero_point``) and, with tensors shaped to broadcast, of
    ``torch.fake_quantize_per_channel_affine``.
    """
    _checks.tensor("x", x, floating=True)
    quant_min = _checks.integer("quant_min", quant_min)
    quant_max = _checks.integer("quant_max", quant_max)
    if quant_min >= quant_max:
        raise ValueError(f"quant_min must be < quant_max, got {quant_min} and {quant_max}")
    if isinstance(scale, torch.Tensor):
        scale = scale.detach().to(device=x.device, dtype=torch.float32)
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"scale must be > 0 and finite, got {scale}")
    else:
        scale = torch.tensor(_checks.positive("scale", scale), dtype=torch.float32,
                             device=x.device)  # fmt: skip
    if isinstance(zero_point, torch.Tensor):
        zero_point = zero_point.detach().to(x.device)
        low_z, high_z = int(zero_point.min()), int(zero_point.max())
    else:
        zero_point = low_z = high_z = _checks.integer("zero_point", zero_point)
    if low_z < quant_min or high_z > quant_max:
        raise ValueError(f"zero_point must be in [quant_min, quant_max] = [{quant_min}, "
                         f"{quant_max}], got {zero_point}")  # fmt: skip
    q = torch.round(x * (1.0 / scale)) + zero_point
    inside = (q >= quant_min) & (q <= quant_max)
    x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * scale
    return x_hat.detach().to(x.dtype) + (x - x.detach()) * inside


# --- chapter 3.4.1: k-means (codebook) quantization -----------------------------------------


class KMeansQuantized(NamedTuple):
    """A weight stored as a codebook of ``2^bits`` float32 values and, per weight, the index of
    its value: ``ŵ = codebook[labels]`` (Han et al. 2016)."""

    codebook: torch.Tensor
    labels: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        """The quantized weight ``codebook[labels]``."""
        return self.codebook[self.labels]

    @property
    def nbytes(self) -> int:
        """Storage: ``bits`` per label (packed) plus 4 bytes per codebook entry."""
        bits = max(1, math.ceil(math.log2(len(self.codebook))))
        return math.ceil(self.labels.numel() * bits / 8) + 4 * self.codebook.numel()


def _nearest(values: torch.Tensor, sorted_codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of an increasing codebook (ties to the lower entry)."""
    midpoints = (sorted_codebook[1:] + sorted_codebook[:-1]) / 2
    return torch.bucketize(values, midpoints)


def kmeans_quantize(weight: torch.Tensor, bits: int, iterations: int = 100) -> KMeansQuantized:
    """k-means (codebook) quantization of a weight to ``k = 2^bits`` shared values, as in Deep
    Compression (Han et al. 2016; chapter 3.4.1).

    Lloyd's algorithm on the weight's values, from the *linear* initialisation Han et al. found
    best (``k`` values evenly spaced from ``min w`` to ``max w``: exactly the uniform grid)::

        repeat:  labels_i = argmin_j |w_i − c_j|        c_j = mean{w_i : labels_i = j}

    until the codebook stops changing (at most ``iterations`` rounds; an empty cluster keeps
    its value). Each round can only lower the squared error ``Σ (w_i − c_{labels_i})²``, so the
    result is never worse than the uniform grid it starts from: the levels move to where the
    weights are dense. In one dimension the codebook stays sorted and the nearest entry is
    found by binary search between midpoints. Same codebook as
    ``sklearn.cluster.KMeans(init=linear grid, n_init=1)``.
    """
    _checks.tensor("weight", weight, floating=True, nonempty=True)
    if not torch.isfinite(weight).all():
        raise ValueError("weight must contain only finite values, got NaN or ±inf")
    bits = _check_bits(bits, 1, 8)
    iterations = _checks.positive_int("iterations", iterations)
    w = weight.detach().double().flatten()
    k = 2**bits
    codebook = torch.linspace(float(w.min()), float(w.max()), k, dtype=torch.float64)
    for _ in range(iterations):
        labels = _nearest(w, codebook)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, w)
        counts = torch.bincount(labels, minlength=k)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)
        if torch.equal(updated, codebook):
            break
        codebook = updated
    labels = _nearest(w, codebook).reshape(weight.shape)
    return KMeansQuantized(codebook.to(torch.float32), labels)


# --- chapter 3.4.1: static post-training quantization with calibration ----------------------

_LAYERS = (nn.Conv2d, nn.Linear)
_PASS_THROUGH = (nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The forward pass of an ``nn.Sequential`` as ``("layer", Conv2d/Linear)``,
    ``("layer+relu", ...)`` (a layer followed by a ReLU, fused), ``("relu", ReLU)`` or
    ``("pass", module)`` for modules that commute with quantization (max-pooling, flatten,
    dropout and identity in eval mode)."""
    _checks.instance("model", model, nn.Sequential, "an nn.Sequential (e.g. models.SmallCNN)")
    modules = _flat(model)
    stages: list[tuple[str, nn.Module]] = []
    i = 0
    while i < len(modules):
        module = modules[i]
        if isinstance(module, _LAYERS):
            if isinstance(module, nn.Conv2d) and (
                    module.groups != 1 or isinstance(module.padding, str)
                    or module.padding_mode != "zeros"):  # fmt: skip
                raise TypeError("model's Conv2d layers must have groups=1 and integer zero "
                                f"padding to be quantized here, got {module}")  # fmt: skip
            fused = i + 1 < len(modules) and type(modules[i + 1]) is nn.ReLU
            stages.append(("layer+relu" if fused else "layer", module))
            i += 2 if fused else 1
            continue
        if type(module) is nn.ReLU:
            stages.append(("relu", module))
        elif isinstance(module, _PASS_THROUGH):
            stages.append(("pass", module))
        else:
            raise TypeError(
                "model must be an nn.Sequential of Conv2d, Linear, ReLU, MaxPool2d, Flatten, "
                f"Dropout and Identity layers to be quantized here, got a {type(module).__name__} "
                "layer (fold BatchNorm into the convolution first)"
            )
        i += 1
    if not any(kind.startswith("layer") for kind, _ in stages):
        raise ValueError("model must hold at least one Conv2d or Linear layer to quantize")
    return stages


def _flat(seq: nn.Sequential) -> list[nn.Module]:
    return [m for child in seq for m in (_flat(child) if isinstance(child, nn.Sequential)
                                          else [child])]  # fmt: skip


def fold_batchnorm(model: nn.Module) -> nn.Sequential:
    """A copy of an ``nn.Sequential`` (nested ones flattened) in which every Conv2d (or
    Linear) followed by a BatchNorm2d (or BatchNorm1d) is one layer with a bias (chapter
    3.4.1; Jacob et al. 2018, §3.2). In eval mode a BatchNorm is an affine map per channel,
    ``γ (z − μ) / σ + β`` with ``σ = √(var + ε)``, so it folds into the layer before it::

        w' = w · γ / σ   (per output channel)        b' = (b − μ) · γ / σ + β

    Quantizing the folded layer is what an int8 kernel runs. Same weights as
    ``torch.nn.utils.fusion.fuse_conv_bn_eval``. Other layers are copied unchanged.
    """
    _checks.instance("model", model, nn.Sequential, "an nn.Sequential (e.g. models.SmallCNN)")
    modules = [copy.deepcopy(m) for m in _flat(model)]
    out: list[nn.Module] = []
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    for module in modules:
        if isinstance(module, norms) and out and isinstance(out[-1], _LAYERS):
            layer = out[-1]
            sigma = torch.sqrt(module.running_var + module.eps)
            gamma = module.weight if module.affine else torch.ones_like(sigma)
            beta = module.bias if module.affine else torch.zeros_like(sigma)
            factor = (gamma / sigma).detach()
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(sigma)
            folded = copy.deepcopy(layer)
            if folded.bias is None:
                folded.bias = nn.Parameter(torch.zeros_like(sigma))
            with torch.no_grad():
                folded.weight.mul_(factor.view(-1, *[1] * (layer.weight.ndim - 1)))
                folded.bias.copy_((bias - module.running_mean) * factor + beta.detach())
            out[-1] = folded
        else:
            out.append(module)
    return nn.Sequential(*out).train(model.training)


class RangeObserver:
    """Records the range ``[low, high]`` of one activation over calibration batches
    (chapter 3.4.1): ``"minmax"`` keeps the smallest and largest value seen; ``"percentile"``
    keeps every value and reports the ``(100 − p)``-th and ``p``-th percentiles, so that a few
    outliers do not stretch the range (and the step ``s``) for all the other values."""

    def __init__(self, method: str = "minmax", percentile: float = 99.99) -> None:
        self.method = _checks.one_of("method", method, ("minmax", "percentile"))
        self.percentile = _checks.real("percentile", percentile, 50, 100, low_open=True)
        self.low, self.high = math.inf, -math.inf
        self.samples: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float().flatten()
        if self.method == "minmax":
            self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))
        else:
            self.samples.append(x)

    @property
    def range(self) -> tuple[float, float]:
        if self.method == "minmax":
            if self.low > self.high:
                raise ValueError("batches must hold at least one batch to calibrate on, got none")
            return self.low, self.high
        if not self.samples:
            raise ValueError("batches must hold at least one batch to calibrate on, got none")
        values = torch.cat(self.samples)
        n = len(values)

        def kth(p: float) -> float:
            return float(values.kthvalue(min(n, max(1, round(p / 100 * n))))[0])

        return kth(100 - self.percentile), kth(self.percentile)


def _inputs(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _batches(batches: Iterable, num_batches: int | None) -> Iterator[torch.Tensor]:
    _checks.batches("batches", batches)
    num_batches = _checks.positive_int("num_batches", num_batches, allow_none=True)
    for i, batch in enumerate(batches):
        if num_batches is not None and i >= num_batches:
            return
        yield _checks.tensor("each batch", _inputs(batch), floating=True)


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable,
    method: str = "minmax",
    percentile: float = 99.99,
    num_batches: int | None = None,
) -> list[tuple[float, float]]:
    """Activation ranges of a float ``nn.Sequential`` on calibration batches (校准,
    chapter 3.4.1): one ``(low, high)`` for the model's input and one for the output of each
    Conv2d / Linear layer (after its ReLU when one follows: the pair is fused), observed by a
    :class:`RangeObserver` with ``method`` over the first ``num_batches`` of ``batches``
    (``(inputs, targets)`` pairs or input tensors; all by default). BatchNorm layers are
    folded first (:func:`fold_batchnorm`)."""
    model = fold_batchnorm(model)
    stages = _stages(model)
    observers = [RangeObserver(method, percentile)]
    observers += [RangeObserver(method, percentile) for kind, _ in stages if kind != "pass"
                  and kind != "relu"]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        for x in _batches(batches, num_batches):
            observers[0].update(x)
            point = 1
            for kind, module in stages:
                x = module(x)
                if kind == "layer+relu":
                    x = torch.relu(x)
                if kind.startswith("layer"):
                    observers[point].update(x)
                    point += 1
    finally:
        model.train(was_training)
    return [o.range for o in observers]


def _fixed_point(multiplier: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``M ≈ M0 · 2^(−n)`` with the int32 ``M0 ∈ [2^30, 2^31)``: the integer multiplier and
    right shift that replace a real multiplier ``0 < M < 2^30`` (Jacob et al. 2018, §2.2)."""
    mantissa, exponent = torch.frexp(multiplier.double())  # M = mantissa · 2^exponent, [0.5, 1)
    m0 = torch.round(mantissa * 2.0**31).long()
    carry = m0 == 2**31
    m0 = torch.where(carry, m0 // 2, m0)
    shift = 31 - exponent.long() - carry.long()
    too_far = (shift - 62).clamp(min=0)  # a tiny M: give up precision rather than overflow
    return m0 >> too_far, shift - too_far


class StaticInt8Layer(nn.Module):
    """One Conv2d or Linear layer (with its ReLU, fused) in integer arithmetic (chapter 3.4.1).

    Input ``q_x`` (integers 0…255 with scale ``S_x`` and zero point ``Z_x``), weights ``q_w``
    (int8, symmetric, one scale ``S_w[c]`` per output channel, zero point 0), bias
    ``q_b = round(b / (S_w S_x))`` in int32, output scale ``S_y`` and zero point ``Z_y``. From
    ``y = S_w S_x Σ q_w (q_x − Z_x) + b`` and ``q_y = Z_y + y / S_y``::

        acc = Σ q_w · (q_x − Z_x) + q_b                       (int32 accumulator)
        q_y = clamp(Z_y + round(M · acc), Z_y if ReLU else 0, 255),   M = S_w · S_x / S_y

    and the real ``M`` is applied as an integer multiply and a rounding right shift,
    ``round(M · acc) = (acc · M0 + 2^(n−1)) >> n`` with ``M ≈ M0 · 2^(−n)`` (Jacob et al. 2018):
    no floating-point operation at all. The integers are held in int64 tensors (a convolution
    gathers its patches with ``unfold`` through float64, which copies integers exactly).
    """

    def __init__(self, layer: nn.Module, x_qparams: tuple[float, int],
                 y_qparams: tuple[float, int], relu: bool) -> None:  # fmt: skip
        super().__init__()
        self.x_scale, self.x_zero = float(x_qparams[0]), int(x_qparams[1])
        self.y_scale, self.y_zero = float(y_qparams[0]), int(y_qparams[1])
        self.relu = relu
        self.conv = None
        if isinstance(layer, nn.Conv2d):
            self.conv = {"kernel_size": layer.kernel_size, "stride": layer.stride,
                         "padding": layer.padding, "dilation": layer.dilation}  # fmt: skip
        w = quantize_symmetric(layer.weight.detach().float(), 8, axis=0)
        w_scale = w.scale.flatten()
        bias = layer.bias.detach().float() if layer.bias is not None else torch.zeros(len(w_scale))
        self.register_buffer("weight", w.values)  # int8, (out, in) or (out, in, kh, kw)
        self.register_buffer("weight_scale", w_scale)  # float32, one per output channel
        self.register_buffer("bias", torch.round(bias / (w_scale * self.x_scale)).to(torch.int32))
        m0, shift = _fixed_point(w_scale.double() * self.x_scale / self.y_scale)
        self.register_buffer("multiplier", m0)  # M0, int32 values
        self.register_buffer("shift", shift)  # n

    @property
    def M(self) -> torch.Tensor:
        """The real requantization multipliers ``M = S_w · S_x / S_y``, one per channel."""
        return self.weight_scale.double() * self.x_scale / self.y_scale

    def accumulate(self, q: torch.Tensor) -> torch.Tensor:
        """The int32 accumulator ``Σ q_w (q_x − Z_x) + q_b`` (as int64)."""
        x = q - self.x_zero  # zero padding below is then the real 0
        w = self.weight.long()
        if self.conv is None:
            return x @ w.T + self.bias
        n, _, height, width = x.shape
        patches = F.unfold(x.double(), **self.conv).long()  # (N, C·kh·kw, L): exact integers
        acc = w.flatten(1) @ patches  # (N, out, L)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.conv[k] for k in (
            "kernel_size", "stride", "padding", "dilation"))  # fmt: skip
        out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return acc.view(n, -1, out_h, out_w) + self.bias.view(1, -1, 1, 1)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        acc = self.accumulate(q)
        shape = (1, -1) + (1, 1) * (acc.ndim == 4)
        m0, shift = self.multiplier.view(shape), self.shift.view(shape)
        rounded = (acc * m0 + (torch.ones_like(shift) << (shift - 1))) >> shift  # round(M·acc)
        return torch.clamp(self.y_zero + rounded, self.y_zero if self.relu else 0, 255)

    def extra_repr(self) -> str:
        kind = "Conv2d" if self.conv is not None else "Linear"
        return (f"{kind}{tuple(self.weight.shape)}, relu={self.relu}, S_x={self.x_scale:.4g}, "
                f"Z_x={self.x_zero}, S_y={self.y_scale:.4g}, Z_y={self.y_zero}")  # fmt: skip


class _ClampAtZeroPoint(nn.Module):
    """A ReLU on integers: ``max(q, Z)`` (the integer ``Z`` is the real 0)."""

    def __init__(self, zero_point: int) -> None:
        super().__init__()
        self.zero_point = zero_point

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return torch.clamp(q, min=self.zero_point)


class StaticInt8Model(nn.Module):
    """A float ``nn.Sequential`` after static post-training quantization (chapter 3.4.1):
    the input is quantized with the calibrated ``(S, Z)``, every layer runs as a
    :class:`StaticInt8Layer`, max-pooling and flatten act on the integers unchanged (they
    commute with a monotone affine map), and only the last output is dequantized,
    ``y = S (q − Z)``."""

    def __init__(self, stages: list[nn.Module], input_qparams: tuple[float, int],
                 output_qparams: tuple[float, int]) -> None:  # fmt: skip
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_scale, self.input_zero = input_qparams
        self.output_scale, self.output_zero = output_qparams

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x.float() * (1.0 / self.input_scale)) + self.input_zero
        return torch.clamp(q, 0, 255).long()

    def forward_integers(self, q: torch.Tensor) -> torch.Tensor:
        """Integers in, integers out: the whole network without a float operation."""
        for stage in self.stages:
            q = stage(q)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.forward_integers(self.quantize_input(x))
        return ((q - self.output_zero) * self.output_scale).float()


def quantize_static(
    model: nn.Module,
    batches: Iterable,
    method: str = "minmax",
    percentile: float = 99.99,
    num_batches: int | None = None,
) -> StaticInt8Model:
    """Static post-training quantization (静态训练后量化, chapter 3.4.1) of a float
    ``nn.Sequential`` of Conv2d, Linear, ReLU, MaxPool2d and Flatten layers: the activation
    ranges are measured once on calibration batches (:func:`calibrate`, ``method`` min-max or
    percentile), each becomes an 8-bit affine ``(S, Z)`` (:func:`affine_qparams`), the weights
    become int8 per output channel (:func:`quantize_symmetric`), and inference runs in
    integers only (:class:`StaticInt8Layer`). *Static*: the activation scales are fixed ahead
    of time, unlike dynamic quantization, which measures them on every batch."""
    _checks.module("model", model)
    model = fold_batchnorm(model)
    stages = _stages(model)
    ranges = calibrate(model, batches, method, percentile, num_batches)
    qparams = [tuple(float(t) for t in affine_qparams(low, high, 8)) for low, high in ranges]
    qparams = [(s, int(z)) for s, z in qparams]
    built: list[nn.Module] = []
    point = 0  # index of the quantization point the current integers use
    for kind, module in stages:
        if kind.startswith("layer"):
            built.append(StaticInt8Layer(module, qparams[point], qparams[point + 1],
                                         relu=kind == "layer+relu"))  # fmt: skip
            point += 1
        elif kind == "relu":
            built.append(_ClampAtZeroPoint(qparams[point][1]))
        else:
            built.append(copy.deepcopy(module).eval())
    return StaticInt8Model(built, qparams[0], qparams[point])


# --- chapter 3.4.1: fake-quantized models (low-bit post-training quantization and QAT) -------


class WeightFakeQuant(nn.Module):
    """A parametrization ``w ↦ ŵ``: symmetric fake quantization to ``bits`` with one scale per
    output channel, ``s_c = max |w_c| / (2^(bits−1) − 1)`` recomputed from the current weight
    at every call (so it follows the weight while it trains)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = _check_bits(bits, 2, 16)
        self.qmax = 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.ndim))
        scale = torch.clamp(w.detach().abs().amax(dim=dims, keepdim=True) / self.qmax, min=_EPS)
        return fake_quantize(w, scale, 0, -self.qmax, self.qmax)


class ActivationFakeQuant(nn.Module):
    """Fake quantization of an activation to ``bits`` (affine, per tensor) over the range
    ``[low, high]`` it keeps in buffers: set by calibration; in training mode moved towards each
    batch's min and max by an exponential moving average (``momentum``, as PyTorch's
    ``MovingAverageMinMaxObserver``); fixed in eval mode."""

    def __init__(self, bits: int, low: float, high: float, momentum: float = 0.01) -> None:
        super().__init__()
        self.bits = _check_bits(bits, 2, 16)
        self.momentum = _checks.fraction("momentum", momentum)
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float(high)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.low.lerp_(x.detach().min(), self.momentum)
                self.high.lerp_(x.detach().max(), self.momentum)
        scale, zero_point = affine_qparams(self.low, self.high, self.bits)
        return fake_quantize(x, scale, zero_point, 0, 2**self.bits - 1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, range=[{float(self.low):.4g}, {float(self.high):.4g}]"


def fake_quant_model(
    model: nn.Module,
    batches: Iterable,
    weight_bits: int = 8,
    activation_bits: int | None = 8,
    method: str = "minmax",
    percentile: float = 99.99,
    num_batches: int | None = None,
) -> nn.Sequential:
    """A copy of a float ``nn.Sequential`` that computes in float32 what a ``weight_bits`` /
    ``activation_bits`` quantized model would (chapter 3.4.1): every Conv2d / Linear weight
    goes through :class:`WeightFakeQuant` (a ``torch.nn.utils.parametrize`` parametrization,
    so the float weight is what an optimizer updates), and an :class:`ActivationFakeQuant`
    follows the input and every layer (after its ReLU), its range calibrated on ``batches``
    (:func:`calibrate`). ``activation_bits=None`` quantizes weights only.

    In eval mode it *is* post-training quantization to those bit widths (no kernel exists for
    4 bits on a CPU, so it is simulated); trained with :func:`course_lib.train.fit` it is
    quantization-aware training (量化感知训练): the forward pass sees the rounded values and the
    straight-through estimator of :func:`fake_quantize` passes the gradient to the float
    weights, which learn to sit where rounding costs least (Jacob et al. 2018;
    Krishnamoorthi 2018). BatchNorm layers are folded first (:func:`fold_batchnorm`: their
    statistics are frozen, as in the last phase of Jacob et al.'s training).
    """
    _checks.module("model", model)
    clone = fold_batchnorm(model)
    _stages(clone)
    weight_bits = _check_bits(weight_bits, 2, 16)
    if activation_bits is not None:
        activation_bits = _checks.integer("activation_bits", activation_bits, 2, 16)
        ranges = iter(calibrate(clone, batches, method, percentile, num_batches))
    layers: list[nn.Module] = []
    if activation_bits is not None:
        layers.append(ActivationFakeQuant(activation_bits, *next(ranges)))
    for kind, module in _stages(clone):
        if kind.startswith("layer"):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(weight_bits))
            layers.append(module)
            if kind == "layer+relu":
                layers.append(nn.ReLU())
            if activation_bits is not None:
                layers.append(ActivationFakeQuant(activation_bits, *next(ranges)))
        else:
            layers.append(module)
    return nn.Sequential(*layers).train(model.training)


# --- chapter 3.4.1: low-rank factorization ---------------------------------------------------


def low_rank_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Replace ``Linear(m, n)`` by two thin layers ``Linear(m, r, bias=False) → Linear(r, n)``
    from the truncated SVD of its weight (低秩分解, chapter 3.4.1; Denton et al. 2014)::

        W = U Σ Vᵀ ≈ W_r = (U_r Σ_r^½)(Σ_r^½ V_rᵀ)        (the r largest singular values)

    ``W_r`` is the best rank-``r`` approximation in the Frobenius norm (Eckart–Young):
    ``‖W − W_r‖_F² = Σ_{i>r} σ_i²``. Parameters fall from ``n·m`` to ``r·(m + n)`` (plus the
    bias), a saving when ``r < n·m / (m + n)``; the FLOPs fall in the same proportion."""
    _checks.instance("layer", layer, nn.Linear, "an nn.Linear")
    n, m = layer.weight.shape
    rank = _checks.integer("rank", rank, 1, min(n, m))
    u, s, vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(m, rank, bias=False)
    second = nn.Linear(rank, n, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:rank])
        second.weight.copy_(u[:, :rank] * root)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second).to(layer.weight.device)


def low_rank(model: nn.Module, rank: int, layers: Sequence[str]) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers named in ``layers`` (names of
    ``model.named_modules()``, e.g. ``["7"]`` in an ``nn.Sequential``) are replaced by
    :func:`low_rank_linear` of rank ``rank`` (chapter 3.4.1)."""
    _checks.module("model", model)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise TypeError(f"layers must be a non-empty list of layer names, got {layers!r}")
    clone = copy.deepcopy(model)
    named = dict(clone.named_modules())
    for name in layers:
        if not isinstance(named.get(name), nn.Linear):
            linear = [k for k, v in named.items() if isinstance(v, nn.Linear)]
            raise ValueError(f"layers must name nn.Linear layers of model ({linear}), "
                             f"got {name!r}")  # fmt: skip
        parent_name, _, child = name.rpartition(".")
        parent = named[parent_name] if parent_name else clone
        setattr(parent, child, low_rank_linear(named[name], rank))
    return clone


# --- chapter 3.4.1: PyTorch's int8 kernels: torch.ao, and its successors in torchao ---------

_AO_WARNINGS = (r"torch\.ao\.quantization is deprecated", r"torch\.quantize_per_tensor.*deprecated",
                r".*quantized tensor creation functions.*deprecated",
                r"Please use quant_min and quant_max", r"must run observer before")  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the known deprecation warnings of ``torch.ao.quantization`` (the chapter shows
    them) and the log lines ``torchao`` and ``torch.compile`` write on import and compilation."""
    names = ("torch.utils._pytree", "torchao", "torch._inductor", "torch._dynamo")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in _AO_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._inductor.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchao.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torchao.*")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _cpu_model(model: nn.Module, why: str) -> None:
    _checks.module("model", model)
    devices = sorted({t.device.type for t in [*model.parameters(), *model.buffers()]})
    if any(d != "cpu" for d in devices):
        raise ValueError(f"model must be on the CPU ({why}), got parameters on {devices}")


def quantize_dynamic_int8(model: nn.Module, per_channel: bool = False) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by PyTorch's *dynamic* int8 Linear
    (chapter 3.4.1): weights stored as int8, activations quantized on the fly per batch, the
    matrix product run by int8 CPU kernels (fbgemm / oneDNN), the result returned in float32.

    The scheme, exactly: weights symmetric int8 with one scale per tensor
    (``default_dynamic_qconfig``), or per output channel with ``per_channel=True``
    (``per_channel_dynamic_qconfig``); activations affine uint8, one scale and zero point per
    tensor computed from each batch's min and max, with ``reduce_range=True`` — 7 bits
    (``0 … 127``), so that fbgemm's AVX2 kernels cannot saturate. It uses
    ``torch.ao.quantization.quantize_dynamic``, deprecated since PyTorch 2.8 (its warning says
    "will be removed in 2.10"; the chapter shows which releases still ship it); the known
    warnings are silenced here. Its successor is ``torchao``'s
    ``quantize_(model, Int8DynamicActivationInt8WeightConfig())``
    (:func:`quantize_torchao_int8`). If the installed PyTorch no longer has the API, this raises
    ``RuntimeError`` naming that replacement rather than return an unquantized model. CPU only.
    """
    _cpu_model(model, "dynamic int8 kernels are CPU kernels")
    per_channel = _checks.flag("per_channel", per_channel)
    try:
        with _quiet():
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as err:
        raise RuntimeError(
            f"torch.ao.quantization.quantize_dynamic is not available in this PyTorch "
            f"({torch.__version__}); use torchao instead: quantize_(model, "
            "Int8DynamicActivationInt8WeightConfig()) (course_lib.compress.quantize_torchao_int8)"
        ) from err
    clone = copy.deepcopy(model).eval()
    spec = {nn.Linear: per_channel_dynamic_qconfig} if per_channel else {nn.Linear}
    with _quiet():
        quantized = quantize_dynamic(clone, spec, dtype=torch.qint8)
    if not any(_is_dynamic_int8_linear(m) for m in quantized.modules()):
        raise RuntimeError("quantize_dynamic found no nn.Linear layer to quantize")
    return quantized


def _is_dynamic_int8_linear(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic") and hasattr(
        module, "weight"
    )


def quantize_static_int8(model: nn.Module, batches: Iterable, num_batches: int | None = None,
                         reduce_range: bool = True) -> nn.Module:  # fmt: skip
    """PyTorch's own static int8 quantization of a float ``nn.Sequential`` (chapter 3.4.1), in
    ``torch.ao``'s eager mode: ``QuantStub → model → DeQuantStub``, every Conv2d/Linear + ReLU
    pair fused, min-max observers for the activations (affine uint8 per tensor; 7 bits with
    ``reduce_range=True``, PyTorch's default for its x86 engine) and symmetric int8 weights per
    output channel, calibrated on the first ``num_batches`` of ``batches``, then converted to
    int8 modules that run fbgemm / oneDNN kernels. The reference for :func:`quantize_static`,
    and the fast path on CPUs (same deprecation as :func:`quantize_dynamic_int8`; its successor
    is the PT2E flow, :func:`quantize_pt2e_int8`). CPU only.
    """
    _cpu_model(model, "int8 kernels are CPU kernels")
    reduce_range = _checks.flag("reduce_range", reduce_range)
    stages = _stages(fold_batchnorm(model))
    try:
        with _quiet():
            from torch.ao.quantization import (
                DeQuantStub,
                MinMaxObserver,
                QConfig,
                QuantStub,
                convert,
                default_per_channel_weight_observer,
                fuse_modules,
                prepare,
            )
    except ImportError as err:
        raise RuntimeError(
            f"torch.ao.quantization's static quantization is not available in this PyTorch "
            f"({torch.__version__}); use torchao's PT2E flow instead: prepare_pt2e / "
            "convert_pt2e with X86InductorQuantizer (course_lib.compress.quantize_pt2e_int8)"
        ) from err
    flat = [m for kind, module in stages
            for m in ([module, nn.ReLU()] if kind == "layer+relu" else [module])]  # fmt: skip
    inner = copy.deepcopy(nn.Sequential(*flat)).eval()
    pairs = [[str(i), str(i + 1)] for i in range(len(inner) - 1)
             if isinstance(inner[i], _LAYERS) and type(inner[i + 1]) is nn.ReLU]  # fmt: skip
    wrapped = nn.Sequential(QuantStub(), inner, DeQuantStub()).eval()
    with _quiet():
        if pairs:
            fuse_modules(inner, pairs, inplace=True)
        wrapped.qconfig = QConfig(
            activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=reduce_range),
            weight=default_per_channel_weight_observer,
        )
        prepare(wrapped, inplace=True)
        with torch.no_grad():
            for x in _batches(batches, num_batches):
                wrapped(x)
        convert(wrapped, inplace=True)
    return wrapped


def _import_torchao():
    """``torchao.quantization``, imported quietly, or ``RuntimeError`` saying how to get it."""
    try:
        with _quiet():
            import torchao.quantization as quantization
    except ImportError as err:
        raise RuntimeError("torchao is not installed: pip install torchao (the successor of "
                           "torch.ao.quantization)") from err  # fmt: skip
    return quantization


def torchao_version() -> str | None:
    """The installed ``torchao`` version, or ``None``."""
    try:
        with _quiet():
            import torchao
    except ImportError:
        return None
    return torchao.__version__


def quantize_torchao_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` quantized by ``torchao``, the successor of ``torch.ao.quantization``
    (chapter 3.4.1): ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` — every
    ``nn.Linear`` weight becomes an ``Int8Tensor`` subclass (symmetric int8 per output channel)
    and each call quantizes its input per row (per token) to int8. In eager mode the matrix
    product is ``torch._int_mm`` surrounded by separate quantize / scale / zero-point
    correction operations, each a kernel launch dispatched in Python through the tensor
    subclass; :func:`compile_int8` fuses them. CPU only here.
    """
    _cpu_model(model, "the chapter measures the CPU path")
    quantization = _import_torchao()
    clone = copy.deepcopy(model).eval()
    with _quiet():
        quantization.quantize_(clone, quantization.Int8DynamicActivationInt8WeightConfig())
    return clone


def quantize_pt2e_int8(model: nn.Module, example_input: torch.Tensor, batches: Iterable,
                       num_batches: int | None = None) -> nn.Module:  # fmt: skip
    """Static int8 quantization by the PT2E flow (chapter 3.4.1), the successor of
    ``torch.ao``'s eager and FX modes, now in ``torchao.quantization.pt2e``:
    ``torch.export`` captures the model as a graph (batch size dynamic),
    ``prepare_pt2e(graph, X86InductorQuantizer())`` inserts observers where the quantizer
    says (uint8 activations per tensor, int8 weights per channel), calibration runs the first
    ``num_batches`` of ``batches``, and ``convert_pt2e`` replaces the observers by
    quantize → dequantize pairs. The result runs in eager mode as a *simulation* (float
    convolutions between the pairs); :func:`compile_int8` lowers the patterns
    ``dequantize → conv → quantize`` to oneDNN int8 kernels. ``.eval()`` is allowed on the
    result (``allow_exported_model_train_eval``) and changes nothing: the graph has no
    dropout or batch norm left to switch.
    """
    _cpu_model(model, "the X86InductorQuantizer targets CPUs")
    _checks.tensor("example_input", example_input, floating=True, nonempty=True)
    _import_torchao()
    with _quiet():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

        quantizer = x86.X86InductorQuantizer()
        quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
        exported = torch.export.export(
            copy.deepcopy(model).eval(), (example_input,),
            dynamic_shapes=({0: torch.export.Dim.AUTO},),
        ).module()  # fmt: skip
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for x in _batches(batches, num_batches):
                prepared(x)
        converted = convert_pt2e(prepared)
        with contextlib.suppress(ImportError):  # let .eval() work (a no-op for this graph)
            from torchao.quantization.pt2e import allow_exported_model_train_eval

            allow_exported_model_train_eval(converted)
        return converted


def compile_int8(model: nn.Module, example_inputs: Sequence[torch.Tensor]):
    """``torch.compile`` a quantized model (:func:`quantize_pt2e_int8`,
    :func:`quantize_torchao_int8`) for the CPU with Inductor's *freezing* (weights become
    constants, so the int8 weight packing and the quantize / dequantize patterns fold into
    oneDNN int8 kernels), and compile it once for each shape of ``example_inputs`` (static
    shapes; a new shape later compiles again, without freezing). Returns the compiled
    callable. Compiling runs a C++ compiler: seconds per shape."""
    _checks.module("model", model)
    if not example_inputs:
        raise ValueError("example_inputs must hold at least one tensor, got none")
    import torch._inductor.config as inductor_config

    # torchao's tensor subclass warns once, at a later call, that it has no cache hash
    warnings.filterwarnings("ignore", message=r".*_stable_hash_for_caching.*")
    with _quiet(), inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(model, dynamic=False)
        for x in example_inputs:
            compiled(_checks.tensor("example_inputs[i]", x))
    return compiled


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
            per_tensor = w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric)
            groups = 1 if per_tensor else w.q_per_channel_scales().numel()
            total += w.numel() * w.element_size() + groups * 8
    return total
