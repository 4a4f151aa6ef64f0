"""course_lib.compress against hand formulas and PyTorch's own quantization (chapters 1, 3.4)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from course_lib import compress
from course_lib.models import MLP


def make_mlp(seed: int = 0, hidden=(300, 100)) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(hidden=hidden)


# --- chapter 1 measures ------------------------------------------------------------------------


def test_count_parameters_matches_hand_count():
    model = make_mlp(hidden=(300, 100))
    expected = (64 * 300 + 300) + (300 * 100 + 100) + (100 * 10 + 10)
    assert compress.count_parameters(model) == expected
    model[1].weight.requires_grad_(False)
    assert compress.count_parameters(model, trainable_only=True) == expected - 64 * 300


def test_flops_of_linear_is_two_b_m_n():
    layer = nn.Linear(32, 16, bias=False)
    assert compress.flops(layer, torch.randn(5, 32)) == 2 * 5 * 32 * 16


def test_measure_latency_quartiles_are_ordered():
    lat = compress.measure_latency(nn.Linear(8, 8), torch.randn(4, 8), warmup=1, repeats=5)
    assert lat.q1 <= lat.median <= lat.q3 and lat.repeats == 5 and lat.iqr >= 0


# --- non-zeros and size ------------------------------------------------------------------------


def test_count_nonzero_dense_and_after_torch_prune():
    model = make_mlp()
    assert compress.count_nonzero(model) == compress.count_parameters(model)
    layer = model[1]
    prune.l1_unstructured(layer, name="weight", amount=0.3)  # PyTorch's pruning, mask applied
    removed = round(0.3 * layer.weight_orig.numel())
    assert int((layer.weight_mask == 0).sum()) == removed
    assert compress.count_nonzero(model) == compress.count_parameters(model) - removed


def test_count_nonzero_sees_through_a_parametrization():
    class ZeroFirstColumns(nn.Module):
        def forward(self, w):
            return torch.cat([torch.zeros_like(w[:, :3]), w[:, 3:]], dim=1)

    layer = nn.Linear(10, 4)
    parametrize.register_parametrization(layer, "weight", ZeroFirstColumns())
    assert compress.count_nonzero(layer) == 4 * 7 + 4  # weights left + biases
    assert compress.count_parameters(layer) == 4 * 10 + 4


def test_model_size_bytes_is_four_bytes_per_float_plus_small_overhead():
    model = make_mlp()
    size = compress.model_size_bytes(model)
    payload = 4 * compress.count_parameters(model)
    assert payload <= size <= payload + 4096


def test_model_size_bytes_shrinks_with_half_precision():
    model = make_mlp()
    half = make_mlp().half()
    ratio = compress.model_size_bytes(model) / compress.model_size_bytes(half)
    assert 1.9 < ratio <= 2.0


# --- int8 quantization written from the formula ------------------------------------------------


def test_quantize_int8_equals_torch_quantize_per_channel():
    torch.manual_seed(0)
    w = torch.randn(40, 30) * torch.linspace(0.01, 3.0, 40)[:, None]
    q = compress.quantize_int8(w, axis=0)
    assert q.values.dtype == torch.int8 and q.scale.shape == (40, 1)
    scales = w.abs().amax(dim=1) / 127
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated but still exact
        ref = torch.quantize_per_channel(
            w, scales.double(), torch.zeros(40, dtype=torch.long), 0, torch.qint8
        )
    assert torch.equal(q.values, ref.int_repr())
    assert torch.allclose(compress.dequantize(q), ref.dequantize(), atol=1e-6)


def test_quantize_int8_error_is_at_most_half_a_step():
    torch.manual_seed(1)
    for shape, axis in [((50, 20), 0), ((50, 20), 1), ((8, 3, 3, 3), 0), ((100,), 0)]:
        w = torch.randn(*shape) * 2.5
        q = compress.quantize_int8(w, axis=axis)
        err = (w - compress.dequantize(q)).abs()
        assert torch.all(err <= q.scale / 2 + 1e-6), (shape, axis)
        assert q.values.abs().max() <= 127
        # the largest entry of each slice maps to +-127 exactly
        assert q.values.abs().amax().item() == 127


def test_quantize_int8_zero_rows_and_storage():
    w = torch.zeros(3, 10)
    w[1] = torch.arange(10) - 4.5
    q = compress.quantize_int8(w)
    assert torch.equal(compress.dequantize(q)[0], torch.zeros(10))
    assert q.nbytes == 3 * 10 * 1 + 3 * 4
    assert w.numel() * 4 / q.nbytes > 2.5


def test_fake_quantize_keeps_original_and_stays_within_bound():
    model = make_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fq = compress.fake_quantize_int8(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    w, w_hat = model[1].weight, fq[1].weight
    step = w.abs().amax(dim=1, keepdim=True) / 127
    assert torch.all((w - w_hat).abs() <= step / 2 + 1e-6)
    assert not torch.equal(w, w_hat)


# --- PyTorch's dynamic int8 -------------------------------------------------------------------


def test_quantize_dynamic_int8_close_to_float_and_smaller():
    model = make_mlp(hidden=(512, 256)).eval()
    x = torch.rand(64, 64)
    qmodel = compress.quantize_dynamic_int8(model)
    assert isinstance(model[1], nn.Linear)  # the original is untouched
    kinds = [type(m).__module__ for m in qmodel.modules()]
    assert sum(k.startswith("torch.ao.nn.quantized.dynamic") for k in kinds) == 3
    with torch.inference_mode():
        ref, out = model(x), qmodel(x)
    rel = (out - ref).norm() / ref.norm()
    assert rel < 0.05
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.95
    assert compress.count_parameters(qmodel) == compress.count_parameters(model)
    assert compress.count_parameters(qmodel, trainable_only=True) == 0
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    int8_zeros = sum(int((m.weight().int_repr() == 0).sum()) for m in qmodel.modules()
                     if isinstance(m, DynamicLinear))  # fmt: skip
    assert int8_zeros > 0  # small weights round to 0 in int8
    assert compress.count_nonzero(qmodel) == compress.count_parameters(model) - int8_zeros
    dense_w = compress.linear_weight_bytes(model)
    assert dense_w == 4 * (64 * 512 + 512 * 256 + 256 * 10)
    assert dense_w / compress.linear_weight_bytes(qmodel) >= 3.9
    assert compress.model_size_bytes(model) / compress.model_size_bytes(qmodel) > 3.5


def test_quantize_dynamic_int8_refuses_a_model_without_linear_layers():
    with pytest.raises(RuntimeError, match="no nn.Linear"):
        compress.quantize_dynamic_int8(nn.Sequential(nn.ReLU()))


# --- the Pareto front (chapters 3.4 and 7; its plot is tested in test_plot.py) --------------------


def test_pareto_front_by_hand():
    costs = [1.0, 2.0, 3.0, 2.5, 4.0]
    scores = [0.5, 0.7, 0.9, 0.6, 0.9]  # (2.5, 0.6) is beaten by (2, 0.7); (4, 0.9) by (3, 0.9)
    assert compress.pareto_front(costs, scores) == [0, 1, 2]
