"""Property-based tests (hypothesis): laws that must hold for *every* valid input, not only for
the hand-picked examples of the other test files (issue 9, "Reliability").

- pruning leaves exactly ``round(amount · N)`` zeros, the very ones ``torch.nn.utils.prune``
  picks, and ``amount`` is the total target sparsity (chapter 3.2);
- ``inverse_transform(transform(x)) == x`` for the scalers, constant columns included (3.3);
- int8 quantization errs by at most half a step, ``|w − ŵ| ≤ s/2`` (3.4);
- tempered softmax is a probability distribution that keeps the order of the logits (3.2);
- and a few more invariants of sampling, sparse storage, augmentation and Pareto fronts.

Examples are few and small (``max_examples`` ≤ 30, no deadline) so that the file runs in
seconds on a 2-core CPU; a failing example is printed by hypothesis and can be replayed.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.utils.prune as torch_prune
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from course_lib import augment, compress, data, distill, prune, recipes, scaling, sparse
from course_lib.models import MLP, SmallCNN

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,  # and no .hypothesis/ folder left in the repository
)

seeds = st.integers(min_value=0, max_value=2**16)
amounts = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
widths = st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=3)


def _mlp(seed: int, hidden: list[int], in_features: int = 6, classes: int = 3) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_features=in_features, hidden=tuple(hidden), num_classes=classes)


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for _, m in prune.prunable_layers(model)]


def _zeros(model: nn.Module) -> int:
    return sum(int((m.weight == 0).sum()) for m in _layers(model))


# --- pruning (chapter 3.2) ------------------------------------------------------------------


@FAST
@given(seed=seeds, hidden=widths, amount=amounts)
def test_global_pruning_zeroes_exactly_what_torch_prune_zeroes(seed, hidden, amount):
    model = _mlp(seed, hidden)
    reference = copy.deepcopy(model)
    n = sum(m.weight.numel() for m in _layers(model))

    prune.magnitude_prune(model, amount, scope="global")
    assert _zeros(model) == round(amount * n)  # Python's round, as torch.nn.utils.prune

    torch_prune.global_unstructured(
        [(m, "weight") for m in _layers(reference)],
        pruning_method=torch_prune.L1Unstructured,
        amount=amount,
    )
    for ours, theirs in zip(_layers(model), _layers(reference), strict=True):
        assert torch.equal(prune.get_mask(ours), theirs.weight_mask.bool())


@FAST
@given(seed=seeds, hidden=widths, amount=amounts)
def test_layerwise_pruning_matches_l1_unstructured_in_every_layer(seed, hidden, amount):
    model = _mlp(seed, hidden)
    reference = copy.deepcopy(model)
    prune.magnitude_prune(model, amount, scope="layer")
    for ours, theirs in zip(_layers(model), _layers(reference), strict=True):
        assert int((ours.weight == 0).sum()) == round(amount * ours.weight.numel())
        torch_prune.l1_unstructured(theirs, "weight", amount=amount)
        assert torch.equal(prune.get_mask(ours), theirs.weight_mask.bool())


@FAST
@given(seed=seeds, first=amounts, second=amounts)
def test_amount_is_the_total_sparsity_and_pruned_weights_stay_pruned(seed, first, second):
    model = _mlp(seed, [8, 5])
    n = sum(m.weight.numel() for m in _layers(model))
    prune.magnitude_prune(model, first)
    before = [prune.get_mask(m) for m in _layers(model)]
    prune.magnitude_prune(model, second)
    assert _zeros(model) == max(round(first * n), round(second * n))
    for mask, m in zip(before, _layers(model), strict=True):
        assert not (prune.get_mask(m) & ~mask).any()  # masks only lose ones
    assert math.isclose(prune.sparsity(model).overall, _zeros(model) / n)


@FAST
@given(seed=seeds, amount=amounts)
def test_conv_pruning_counts_zeros_over_all_layer_types(seed, amount):
    torch.manual_seed(seed)
    model = SmallCNN(channels=(3, 4))
    n = sum(m.weight.numel() for m in _layers(model))
    prune.magnitude_prune(model, amount)
    assert _zeros(model) == round(amount * n)
    permanent = prune.make_permanent(copy.deepcopy(model))
    assert not any(parametrize.is_parametrized(m) for m in permanent.modules())
    assert _zeros(permanent) == round(amount * n)


@FAST
@given(seed=seeds, hidden=widths, amount=amounts)
def test_remove_neurons_keeps_n_minus_round_amount_n_units_at_least_one(seed, hidden, amount):
    model = _mlp(seed, hidden)
    smaller = prune.remove_neurons(model, amount)
    expected = [max(1, n - round(amount * n)) for n in hidden]
    assert prune.hidden_widths(smaller) == expected
    x = torch.randn(3, 6)
    assert smaller(x).shape == model(x).shape


@FAST
@given(
    target=st.floats(min_value=0.0, max_value=0.999),
    rounds=st.integers(min_value=1, max_value=10),
    start_fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_sparsity_schedule_removes_the_same_fraction_of_survivors_each_round(
    target, rounds, start_fraction
):
    start = target * start_fraction
    schedule = prune.sparsity_schedule(target, rounds, start=start)
    assert len(schedule) == rounds
    assert math.isclose(schedule[-1], target, abs_tol=1e-12)
    levels = [start, *schedule]
    assert all(a <= b + 1e-12 for a, b in zip(levels, levels[1:]))
    kept = [(1 - b) / (1 - a) for a, b in zip(levels, levels[1:])]
    assert all(math.isclose(k, kept[0], rel_tol=1e-9) for k in kept)


# --- scaling (chapter 3.3) ------------------------------------------------------------------


def _table(seed: int, n: int, d: int, constant: list[bool], dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    scale = torch.exp(3 * torch.randn(d, generator=generator, dtype=torch.float64))
    X = torch.randn(n, d, generator=generator, dtype=torch.float64) * scale + 10 * scale
    for j, is_constant in enumerate(constant[:d]):
        if is_constant:
            X[:, j] = float(X[0, j])
    return X.to(dtype)


tables = st.tuples(
    seeds,
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=6),
    st.lists(st.booleans(), min_size=6, max_size=6),
)


@FAST
@given(table=tables)
def test_standardize_inverse_undoes_transform_even_on_constant_columns(table):
    seed, n, d, constant = table
    X = _table(seed, n, d, constant)
    scaler = scaling.Standardize().fit(X)
    Z = scaler.transform(X)
    assert torch.isfinite(Z).all()
    torch.testing.assert_close(scaler.inverse_transform(Z), X, rtol=1e-12, atol=1e-9)
    for j in range(d):
        if torch.all(X[:, j] == X[0, j]):
            assert torch.all(Z[:, j] == 0)  # a constant feature maps to 0 exactly, never NaN
    if n > 1:
        torch.testing.assert_close(Z.mean(0), torch.zeros(d, dtype=Z.dtype), rtol=0, atol=1e-9)


@FAST
@given(
    table=tables,
    low=st.floats(min_value=-5, max_value=5),
    width=st.floats(min_value=0.1, max_value=10),
)
def test_minmax_inverse_undoes_transform_and_lands_in_the_range(table, low, width):
    seed, n, d, constant = table
    X = _table(seed, n, d, constant)
    a, b = low, low + width
    scaler = scaling.MinMaxScale((a, b)).fit(X)
    Z = scaler.transform(X)
    assert torch.isfinite(Z).all()
    assert (Z >= a - 1e-9).all() and (Z <= b + 1e-9).all()
    torch.testing.assert_close(scaler.inverse_transform(Z), X, rtol=1e-12, atol=1e-9)


@FAST
@given(table=tables)
def test_scalers_round_trip_float32_within_float32_precision(table):
    seed, n, d, constant = table
    X = _table(seed, n, d, constant, dtype=torch.float32)
    for scaler in (scaling.Standardize(), scaling.MinMaxScale()):
        Z = scaler.fit_transform(X)
        assert Z.dtype == torch.float32
        back = scaler.inverse_transform(Z)
        torch.testing.assert_close(back, X, rtol=1e-5, atol=1e-5 * float(X.abs().max()))


# --- int8 quantization (chapter 3.4) --------------------------------------------------------


@FAST
@given(
    seed=seeds,
    shape=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=3),
    axis_choice=st.integers(min_value=0, max_value=10),
    log_scale=st.floats(min_value=-8, max_value=8),
    zero_slice=st.booleans(),
)
def test_quantize_dequantize_error_is_at_most_half_a_step(
    seed, shape, axis_choice, log_scale, zero_slice
):
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=generator) * 10.0**log_scale
    axis = axis_choice % w.ndim
    if zero_slice:
        w.select(axis, 0).zero_()
    q = compress.quantize_int8(w, axis=axis)
    assert q.values.dtype == torch.int8 and q.values.shape == w.shape
    assert int(q.values.min()) >= -127 and int(q.values.max()) <= 127
    error = (w - compress.dequantize(q)).abs()
    bound = q.scale / 2 * (1 + 1e-5) + 1e-30  # float32 rounding of w / s costs a few ulps
    assert (error <= bound).all()
    # the largest |w| of every non-zero slice uses the full range ±127
    peak = q.values.abs().amax(dim=[d for d in range(w.ndim) if d != axis]) if w.ndim > 1 \
        else q.values.abs()
    slice_max = w.abs().amax(dim=[d for d in range(w.ndim) if d != axis]) if w.ndim > 1 \
        else w.abs()
    assert torch.all((peak == 127) | (slice_max == 0))


# --- distillation (chapter 3.2) -------------------------------------------------------------


@FAST
@given(
    seed=seeds,
    batch=st.integers(min_value=1, max_value=5),
    classes=st.integers(min_value=1, max_value=10),
    temperature=st.floats(min_value=0.05, max_value=50.0),
    spread=st.floats(min_value=0.0, max_value=30.0),
)
def test_softmax_with_temperature_is_a_distribution_keeping_the_order(
    seed, batch, classes, temperature, spread
):
    z = torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed)) * spread
    p = distill.softmax_with_temperature(z, temperature)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(batch), rtol=0, atol=1e-5)
    i, j = torch.meshgrid(torch.arange(classes), torch.arange(classes), indexing="ij")
    larger = z[:, i] > z[:, j]
    assert (p[:, i] >= p[:, j])[larger].all()


@FAST
@given(
    seed=seeds,
    temperature=st.floats(min_value=0.1, max_value=20.0),
    alpha=st.floats(min_value=0.0, max_value=1.0),
)
def test_distillation_loss_is_nonnegative_and_its_soft_part_vanishes_on_the_teacher(
    seed, temperature, alpha
):
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(6, 4, generator=generator) * 3
    student = torch.randn(6, 4, generator=generator) * 3
    targets = torch.randint(0, 4, (6,), generator=generator)
    assert distill.distillation_loss(student, teacher, targets, temperature, alpha) >= -1e-6
    soft_only = distill.distillation_loss(teacher, teacher, None, temperature, 1.0)
    assert abs(float(soft_only)) < 1e-5


# --- sampling and sparse storage (chapter 3.3) ----------------------------------------------


@FAST
@given(
    seed=seeds,
    labels=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=60),
    fraction=st.floats(min_value=1e-3, max_value=1.0),
    stratify=st.booleans(),
)
def test_subsample_indices_are_sorted_unique_and_sized_by_round(seed, labels, fraction, stratify):
    y = torch.tensor(labels)
    idx = data.subsample_indices(y, fraction, seed=seed, stratify=stratify)
    assert torch.equal(idx, torch.unique(idx))  # sorted, no duplicates
    assert 0 <= int(idx.min()) and int(idx.max()) < len(y)
    if stratify:
        counts = torch.bincount(y).tolist()
        expected = sum(max(1, round(fraction * c)) for c in counts if c > 0)
        assert torch.equal(torch.bincount(y[idx], minlength=len(counts)) > 0,
                           torch.bincount(y, minlength=len(counts)) > 0)  # fmt: skip
    else:
        expected = max(1, round(fraction * len(y)))
    assert len(idx) == expected
    assert torch.equal(idx, data.subsample_indices(y, fraction, seed=seed, stratify=stratify))


@FAST
@given(
    seed=seeds,
    rows=st.integers(min_value=1, max_value=12),
    cols=st.integers(min_value=1, max_value=12),
    density=st.floats(min_value=0.0, max_value=1.0),
    layout=st.sampled_from(["coo", "csr"]),
)
def test_sparse_matrices_have_exact_nnz_and_round_trip(seed, rows, cols, density, layout):
    X = sparse.random_sparse_matrix(rows, cols, density, seed=seed)
    nnz = round(density * rows * cols)
    assert int(torch.count_nonzero(X)) == nnz
    assert math.isclose(sparse.density(X), nnz / (rows * cols))
    S = sparse.to_sparse(X, layout)
    assert torch.equal(S.to_dense(), X)
    if layout == "csr":  # values + column indices + row pointers
        assert sparse.memory_bytes(S) == nnz * 4 + nnz * 8 + (rows + 1) * 8
    else:  # values + (row, col) indices
        assert sparse.memory_bytes(S) == nnz * 4 + 2 * nnz * 8


@FAST
@given(
    n=st.integers(min_value=1, max_value=40),
    batch_size=st.integers(min_value=1, max_value=50),
    seed=seeds,
)
def test_batch_loader_visits_every_sample_once_per_epoch(n, batch_size, seed):
    split = data.Split(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n))
    batches = list(data.batch_loader(split, batch_size=batch_size, seed=seed))
    assert [len(b[1]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(seen.sort().values, torch.arange(n))


# --- augmentation (chapters 3.3 and 5) --------------------------------------------------------


@FAST
@given(
    seed=seeds,
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
)
def test_hflip_is_an_involution_and_identity_theta_is_the_identity(seed, shape):
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(augment.hflip(augment.hflip(images)), images)
    theta = augment.affine_theta(height=shape[2], width=shape[3])
    torch.testing.assert_close(theta, torch.eye(2, 3))
    torch.testing.assert_close(augment.affine_resample(images, theta), images)


@FAST
@given(
    seed=seeds,
    n=st.integers(min_value=1, max_value=5),
    length=st.integers(min_value=1, max_value=16),
    shift_fraction=st.floats(min_value=0.0, max_value=0.99),
)
def test_time_shift_is_a_rotation_of_every_signal(seed, n, length, shift_fraction):
    generator = torch.Generator().manual_seed(seed)
    signals = torch.randn(n, length, generator=generator)
    max_shift = int(shift_fraction * length)
    out = recipes.random_time_shift(signals, max_shift, generator=generator)
    for x, y in zip(signals, out, strict=True):
        rotations = [torch.roll(x, k) for k in range(-max_shift, max_shift + 1)]
        assert any(torch.equal(y, r) for r in rotations)


# --- Pareto fronts (chapters 3.4 and 7) -----------------------------------------------------


@FAST
@given(
    points=st.lists(
        st.tuples(st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=6)),
        min_size=1,
        max_size=15,
    )
)
def test_pareto_front_is_exactly_the_set_of_non_dominated_points(points):
    costs, scores = [p[0] for p in points], [p[1] for p in points]
    front = compress.pareto_front(costs, scores)

    def dominates(j, i):
        return (costs[j] <= costs[i] and scores[j] >= scores[i]
                and (costs[j] < costs[i] or scores[j] > scores[i]))  # fmt: skip

    for i in range(len(points)):
        dominated = any(dominates(j, i) for j in range(len(points)) if j != i)
        assert (i in front) == (not dominated)
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)
