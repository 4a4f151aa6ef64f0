"""course_lib.compress against hand formulas and PyTorch's own quantization (chapters 1, 3.4)."""

from __future__ import annotations

import copy
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


# --- chapter 3.4.1: affine and symmetric quantization against PyTorch's ---------------------


def _quiet_torch_quantized():
    """PyTorch's quantized tensors are deprecated but still exact: silence their warning."""
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.simplefilter("ignore")
    return context


def test_quantize_affine_equals_torch_quantize_per_tensor_and_per_channel():
    torch.manual_seed(0)
    x = torch.randn(64, 50) * torch.linspace(0.1, 3.0, 64)[:, None] + 0.3
    q = compress.quantize_affine(x, bits=8)
    # half steps: ties must round like PyTorch (x * (1/s), half to even)
    ties = (torch.arange(-100, 100).float() + 0.5) * q.scale
    qt = compress.quantize_affine(torch.cat([ties, x.flatten()]), bits=8)
    qc = compress.quantize_affine(x, bits=8, axis=0)
    qc1 = compress.quantize_affine(x, bits=8, axis=1)
    ctx = _quiet_torch_quantized()
    try:
        ref = torch.quantize_per_tensor(x, q.scale.item(), int(q.zero_point), torch.quint8)
        ref_t = torch.quantize_per_tensor(torch.cat([ties, x.flatten()]), qt.scale.item(),
                                          int(qt.zero_point), torch.quint8)
        ref_c = torch.quantize_per_channel(x, qc.scale.flatten().double(),
                                           qc.zero_point.flatten().long(), 0, torch.quint8)
        ref_c1 = torch.quantize_per_channel(x, qc1.scale.flatten().double(),
                                            qc1.zero_point.flatten().long(), 1, torch.quint8)
    finally:
        ctx.__exit__(None, None, None)
    assert q.values.dtype == torch.uint8 and q.scale.ndim == 0
    assert qc.scale.shape == (64, 1) and qc.zero_point.shape == (64, 1)
    assert torch.equal(q.values, ref.int_repr())
    assert torch.equal(qt.values, ref_t.int_repr())
    assert torch.equal(qc.values, ref_c.int_repr())
    assert torch.equal(qc1.values, ref_c1.int_repr())
    assert torch.allclose(qc.dequantize(), ref_c.dequantize(), atol=1e-6)


def test_quantize_affine_error_is_at_most_half_a_step_and_zero_is_exact():
    torch.manual_seed(1)
    for bits in (2, 4, 8, 12):
        for axis in (None, 0, 1):
            x = torch.randn(20, 30) * 2 + 0.5
            q = compress.quantize_affine(x, bits, axis)
            assert int(q.values.min()) >= 0 and int(q.values.max()) <= 2**bits - 1
            assert torch.all((x - q.dequantize()).abs() <= q.scale / 2 + 1e-6), (bits, axis)
            zero = compress.AffineQuantized(q.zero_point.expand_as(x).to(q.values.dtype),
                                            q.scale, q.zero_point)
            assert torch.equal(zero.dequantize(), torch.zeros_like(x))
    relu = torch.rand(100)  # all >= 0: the zero point is 0 and every level is used for [0, max]
    q = compress.quantize_affine(relu, 8)
    assert int(q.zero_point) == 0 and int(q.values.max()) == 255


def test_quantize_symmetric_matches_quantize_int8_and_torch():
    torch.manual_seed(2)
    w = torch.randn(16, 9)
    s = compress.quantize_symmetric(w, 8, axis=0)
    legacy = compress.quantize_int8(w, axis=0)
    assert torch.equal(s.values, legacy.values) and torch.equal(s.scale, legacy.scale)
    assert torch.equal(s.zero_point, torch.zeros_like(s.zero_point))
    ctx = _quiet_torch_quantized()
    try:
        ref = torch.quantize_per_channel(w, s.scale.flatten().double(),
                                         torch.zeros(16, dtype=torch.long), 0, torch.qint8)
    finally:
        ctx.__exit__(None, None, None)
    assert torch.equal(s.values, ref.int_repr())
    q4 = compress.quantize_symmetric(w, 4)
    assert int(q4.values.abs().max()) == 7


# --- fake quantization with the straight-through estimator ----------------------------------


def test_fake_quantize_forward_and_gradient_equal_torch_per_tensor():
    torch.manual_seed(3)
    scale, zp = 0.037, 100
    ties = (torch.arange(-120, 160).float() + 0.5) * scale  # exact half steps and clipping
    x = torch.cat([torch.randn(500) * 3, ties]).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    weights = torch.randn(len(x))
    y = compress.fake_quantize(x, scale, zp, 0, 255)
    y_ref = torch.fake_quantize_per_tensor_affine(x_ref, scale, zp, 0, 255)
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    assert torch.equal(y, y_ref)
    assert torch.equal(x.grad, x_ref.grad)
    assert 0 < int((x.grad == 0).sum()) < len(x)  # some clipped, some passed straight through


def test_fake_quantize_with_tensors_equals_torch_per_channel():
    torch.manual_seed(4)
    w = torch.randn(8, 20, requires_grad=True)
    w_ref = w.detach().clone().requires_grad_()
    scale = torch.rand(8) * 0.05 + 0.01
    zp = torch.randint(-3, 4, (8,), dtype=torch.int32)
    y = compress.fake_quantize(w, scale[:, None], zp[:, None], -8, 7)
    y_ref = torch.fake_quantize_per_channel_affine(w_ref, scale, zp, 0, -8, 7)
    y.pow(2).sum().backward()
    y_ref.pow(2).sum().backward()
    assert torch.equal(y, y_ref) and torch.equal(w.grad, w_ref.grad)


# --- k-means quantization ---------------------------------------------------------------------


def test_kmeans_quantize_equals_sklearn_lloyd_from_the_linear_grid():
    from sklearn.cluster import KMeans

    torch.manual_seed(5)
    w = torch.randn(40, 50).double()
    for bits in (2, 3, 4):
        q = compress.kmeans_quantize(w, bits)
        assert q.codebook.shape == (2**bits,) and q.labels.shape == w.shape
        assert torch.equal(q.dequantize(), q.codebook[q.labels])
        init = torch.linspace(float(w.min()), float(w.max()), 2**bits).double()
        ref = KMeans(2**bits, init=init.numpy()[:, None], n_init=1, max_iter=300, tol=0,
                     algorithm="lloyd").fit(w.flatten().numpy()[:, None])
        centers = torch.tensor(sorted(ref.cluster_centers_.ravel()), dtype=torch.float32)
        assert torch.allclose(q.codebook, centers, atol=1e-5), bits
        # never worse than the uniform grid it starts from, and each weight at its nearest value
        grid = init[(w.flatten()[:, None] - init).abs().argmin(1)]
        assert ((w.flatten() - q.dequantize().flatten().double()) ** 2).mean() <= (
            (w.flatten() - grid) ** 2).mean()  # fmt: skip
        nearest = (w.flatten()[:, None].float() - q.codebook).abs().argmin(1)
        assert torch.equal(q.codebook[nearest], q.dequantize().flatten())
    assert q.nbytes == (w.numel() * 4 + 7) // 8 + 16 * 4


# --- batch-norm folding, static quantization ----------------------------------------------------


def _trained_cnn(seed: int = 0):
    """A small CNN with batch normalization (the layout of models.SmallCNN with BatchNorm)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10),
    )
    for m in model.modules():  # non-trivial BatchNorm statistics and affine parameters
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_fold_batchnorm_equals_torch_fuse_conv_bn_eval():
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = _trained_cnn()
    folded = compress.fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    ref = fuse_conv_bn_eval(copy.deepcopy(model[0]), copy.deepcopy(model[1]))
    assert torch.allclose(folded[0].weight, ref.weight, atol=1e-6)
    assert torch.allclose(folded[0].bias, ref.bias, atol=1e-6)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_fixed_point_multiplier_approximates_m():
    m = torch.tensor([0.7, 0.0123, 3.5e-6, 1.0, 12.5], dtype=torch.float64)
    m0, shift = compress._fixed_point(m)
    assert bool(((m0 >= 2**30) & (m0 < 2**31)).all())
    assert torch.allclose(m0.double() / 2.0 ** shift.double(), m, rtol=2**-30)


def test_static_int8_layers_match_torch_quantized_kernels():
    """Each integer layer against torch.ao's quantized conv / linear with the same scales:
    activations kept below 128 so that no CPU kernel can saturate."""
    import torch.ao.nn.quantized.functional as qF

    torch.manual_seed(6)
    for layer, x in [(nn.Conv2d(3, 8, 3, padding=1), torch.rand(4, 3, 8, 8)),
                     (nn.Linear(20, 12), torch.rand(6, 20))]:  # fmt: skip
        x_q, y_q = (1 / 127, 0), (0.02, 90)
        ours = compress.StaticInt8Layer(layer, x_q, y_q, relu=False)
        qx = torch.clamp(torch.round(x / x_q[0]), 0, 127)
        ctx = _quiet_torch_quantized()
        try:
            tqx = torch.quantize_per_tensor(qx * x_q[0], x_q[0], 0, torch.quint8)
            w = torch.quantize_per_channel(layer.weight.detach(), ours.weight_scale.double(),
                                           torch.zeros(len(ours.weight_scale), dtype=torch.long),
                                           0, torch.qint8)  # fmt: skip
            if isinstance(layer, nn.Conv2d):
                ref = qF.conv2d(tqx, w, layer.bias.detach(), padding=1, scale=y_q[0],
                                zero_point=y_q[1])  # fmt: skip
            else:
                ref = qF.linear(tqx, w, layer.bias.detach(), scale=y_q[0], zero_point=y_q[1])
        finally:
            ctx.__exit__(None, None, None)
        out = ours(qx.long())
        assert out.dtype == torch.int64
        diff = (out - ref.int_repr().long()).abs()
        assert int(diff.max()) <= 1 and float((diff == 0).double().mean()) > 0.95


def test_quantize_static_agrees_with_torch_ao_static_and_the_float_model():
    model = _trained_cnn(1)
    torch.manual_seed(7)
    calib = [torch.rand(16, 1, 8, 8) for _ in range(4)]
    x = torch.rand(64, 1, 8, 8)
    ours = compress.quantize_static(model, calib)
    ref = compress.quantize_static_int8(model, calib, reduce_range=False)
    with torch.no_grad():
        y, y_ours, y_ref = model(x), ours(x), ref(x)
    assert not ours.forward_integers(ours.quantize_input(x)).is_floating_point()
    assert (y_ours - y).norm() / y.norm() < 0.05
    assert (y_ours.argmax(1) == y_ref.argmax(1)).double().mean() >= 0.95
    # the 8-bit fake-quantized model computes the same numbers in float (up to rounding of M)
    fq = compress.fake_quant_model(model, calib, 8, 8).eval()
    with torch.no_grad():
        assert (fq(x) - y_ours).abs().max() <= 3 * ours.output_scale
    # folding removes each BatchNorm's γ and β and gives its convolution a bias
    assert compress.count_parameters(ours) == compress.count_parameters(model) - sum(
        m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert compress.model_size_bytes(ours) < compress.model_size_bytes(model) / 2


def test_calibrate_percentile_clips_outliers():
    model = nn.Sequential(nn.Linear(4, 4))
    x = torch.randn(1000, 4)
    x[0, 0] = 100.0
    (low, high), _ = compress.calibrate(model, [x], "minmax")
    (p_low, p_high), _ = compress.calibrate(model, [x], "percentile", percentile=99.0)
    assert high == 100.0 and p_high < 5 and p_low > low


def test_fake_quant_model_trains_through_the_ste():
    model = _trained_cnn(2)
    calib = [torch.rand(16, 1, 8, 8)]
    qat = compress.fake_quant_model(model, calib, weight_bits=3, activation_bits=4).train()
    act = next(m for m in qat.modules() if isinstance(m, compress.ActivationFakeQuant))
    before_high = float(act.high)
    optimizer = torch.optim.SGD(qat.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(qat(torch.rand(8, 1, 8, 8) * 2), torch.arange(8))
    loss.backward()
    first = qat[1]
    assert first.parametrizations.weight.original.grad.abs().sum() > 0
    optimizer.step()
    assert float(act.high) != before_high  # the range follows the batches in training mode
    qat.eval()
    fixed = float(act.high)
    qat(torch.rand(8, 1, 8, 8) * 5)
    assert float(act.high) == fixed
    levels = torch.unique(first.weight[0].detach())
    assert len(levels) <= 7  # 3-bit symmetric: -3 … 3


# --- low-rank factorization --------------------------------------------------------------------


def test_low_rank_linear_is_the_eckart_young_truncation():
    torch.manual_seed(8)
    layer = nn.Linear(30, 20)
    sigma = torch.linalg.svdvals(layer.weight.detach())
    for rank in (1, 5, 20):
        low = compress.low_rank_linear(layer, rank)
        w_r = low[1].weight @ low[0].weight
        err = ((layer.weight - w_r) ** 2).sum()
        assert torch.allclose(err, (sigma[rank:] ** 2).sum(), atol=1e-4)
        x = torch.randn(3, 30)
        assert torch.allclose(low(x), x @ w_r.T + layer.bias, atol=1e-5)
        assert compress.count_parameters(low) == rank * 50 + 20
    assert torch.allclose(compress.low_rank_linear(layer, 20)(x), layer(x), atol=1e-5)


def test_low_rank_replaces_only_the_named_layers():
    model = make_mlp(hidden=(64, 32))
    low = compress.low_rank(model, 4, ["3"])
    assert isinstance(model[3], nn.Linear) and isinstance(low[3], nn.Sequential)
    assert isinstance(low[1], nn.Linear)
    assert compress.flops(low, torch.randn(2, 64)) < compress.flops(model, torch.randn(2, 64))


# --- FLOPs of quantized models, PyTorch's kernels and their successors ---------------------------


def test_flops_counts_the_matmuls_of_int8_models():
    model = _trained_cnn(3)
    x = torch.rand(4, 1, 8, 8)
    expected = compress.flops(model, x)
    dynamic = compress.quantize_dynamic_int8(model)
    static = compress.quantize_static_int8(model, [x])
    assert compress.flops(dynamic, x) == expected
    assert compress.flops(static, x) == expected
    assert compress.flops(compress.quantize_static(model, [x]), x) == expected

    class Unknown(nn.Module):
        def forward(self, x):
            return x

    Unknown.__module__ = "torch.ao.nn.quantized.modules.unknown"
    with pytest.raises(ValueError, match="FLOPs can be counted.*Unknown"):
        compress.flops(nn.Sequential(nn.Linear(3, 3), Unknown()), torch.ones(1, 3))


def test_quantize_dynamic_int8_per_channel_scheme():
    model = make_mlp(hidden=(64, 32)).eval()
    per_tensor = compress.quantize_dynamic_int8(model)
    per_channel = compress.quantize_dynamic_int8(model, per_channel=True)
    assert per_tensor[1].weight().qscheme() == torch.per_tensor_affine
    assert per_channel[1].weight().qscheme() == torch.per_channel_affine
    x = torch.rand(16, 64)
    with torch.inference_mode():
        ref = model(x)
        assert (per_channel(x) - ref).norm() <= (per_tensor(x) - ref).norm() * 1.5


def test_old_api_gone_raises_with_the_replacement_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)
    with pytest.raises(RuntimeError, match="Int8DynamicActivationInt8WeightConfig"):
        compress.quantize_dynamic_int8(make_mlp())
    with pytest.raises(RuntimeError, match="prepare_pt2e"):
        compress.quantize_static_int8(_trained_cnn(), [torch.rand(2, 1, 8, 8)])


def test_torchao_successors_agree_with_the_float_model():
    pytest.importorskip("torchao")
    model = _trained_cnn(4)
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        ao = compress.quantize_torchao_int8(model)
        assert (ao(x) - ref).norm() / ref.norm() < 0.05
        assert compress.flops(ao, x) == compress.flops(model, x)
        pt2e = compress.quantize_pt2e_int8(model, x, [x])
        assert (pt2e(x) - ref).norm() / ref.norm() < 0.05
        assert pt2e(x[:3]).shape == (3, 10)  # the batch size stays dynamic


def test_cpu_int8_support_names_capability_and_engine():
    info = compress.cpu_int8_support()
    assert info["torch CPU capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["quantized engine"] == torch.backends.quantized.engine
    assert set(info.values()) - {"yes", "no", "unknown"} <= {
        info["torch CPU capability"], info["quantized engine"]}  # fmt: skip
