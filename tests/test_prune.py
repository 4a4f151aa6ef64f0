"""course_lib.prune against torch.nn.utils.prune and against hand-built smaller models."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from course_lib.models import MLP, SmallCNN, StackedMLP, fit_stacked
from course_lib.prune import (
    get_mask,
    gradual_sparsity,
    hidden_widths,
    iterative_prune,
    magnitude_prune,
    make_permanent,
    neuron_importance,
    nm_mask,
    nm_prune,
    remove_neurons,
    set_mask,
    sparsity,
    sparsity_schedule,
)


def _mlp(seed=0, hidden=(30, 20)):
    torch.manual_seed(seed)
    return MLP(in_features=16, hidden=hidden, num_classes=5)


def _cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(channels=(6, 8))


def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.mark.parametrize("make", [_mlp, _cnn])
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_global_masks_equal_torch_global_unstructured(make, amount):
    ours, ref = make(), make()
    magnitude_prune(ours, amount, scope="global")
    params = [(m, "weight") for m in ref.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                    amount=amount)
    for w_ours, (m, _) in zip(_weights(ours), params, strict=True):
        assert torch.equal(w_ours == 0, m.weight == 0)
        assert torch.equal(w_ours, m.weight)


@pytest.mark.parametrize("amount", [0.25, 0.6, 0.95])
def test_layer_masks_equal_torch_l1_unstructured(amount):
    ours, ref = _cnn(1), _cnn(1)
    magnitude_prune(ours, amount, scope="layer")
    refs = [m for m in ref.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for m_ref, w_ours in zip(refs, _weights(ours), strict=True):
        torch_prune.l1_unstructured(m_ref, "weight", amount=amount)
        assert torch.equal(w_ours == 0, m_ref.weight == 0)
        assert int((w_ours == 0).sum()) == round(amount * w_ours.numel())


def test_global_pruning_counts_and_report():
    model = _mlp()
    magnitude_prune(model, 0.7)
    total = sum(w.numel() for w in _weights(model))
    zeros = sum(int((w == 0).sum()) for w in _weights(model))
    assert zeros == round(0.7 * total)
    report = sparsity(model)
    assert report.overall == pytest.approx(zeros / total)
    assert [s.weights for s in report.layers] == [w.numel() for w in _weights(model)]
    assert [s.nonzero for s in report.layers] == [int((w != 0).sum()) for w in _weights(model)]
    frame = report.to_frame()
    assert frame.loc["total", "nonzero"] == total - zeros


def test_sparsity_of_a_dense_model_is_zero():
    assert sparsity(_mlp()).overall == 0.0


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
    ],
    ids=["adam-wd", "adamw", "sgd-momentum"],
)
def test_pruned_weights_stay_zero_while_fine_tuning(make_optimizer):
    torch.manual_seed(0)
    model = _mlp()
    x, y = torch.randn(64, 16), torch.randint(0, 5, (64,))
    # The optimizer exists BEFORE pruning and has momentum / Adam state for every weight:
    # without a mask in the forward pass these states would revive pruned weights.
    optimizer = make_optimizer(model.parameters())
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    magnitude_prune(model, 0.8)
    zero_before = [(w == 0).clone() for w in _weights(model)]
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    after = _weights(model)
    for z, w in zip(zero_before, after, strict=True):
        assert torch.all(w[z] == 0)
        assert not torch.equal(w[~z], torch.zeros_like(w[~z]))  # the rest did train
    make_permanent(model)
    for z, w in zip(zero_before, _weights(model), strict=True):
        assert isinstance(w, nn.Parameter) and torch.all(w[z] == 0)


def test_pruning_is_monotone_and_masks_only_lose_ones():
    model = _mlp()
    magnitude_prune(model, 0.5)
    first = [get_mask(m).clone() for m in model.modules() if isinstance(m, nn.Linear)]
    magnitude_prune(model, 0.8)
    second = [get_mask(m) for m in model.modules() if isinstance(m, nn.Linear)]
    for a, b in zip(first, second, strict=True):
        assert torch.all(a | ~b)  # b ⊆ a
    assert sparsity(model).overall == pytest.approx(0.8, abs=1e-3)
    magnitude_prune(model, 0.3)  # lower target: nothing comes back
    assert sparsity(model).overall == pytest.approx(0.8, abs=1e-3)


def test_pruned_model_can_be_deep_copied_and_state_dict_roundtrips():
    model = _mlp()
    magnitude_prune(model, 0.5)
    clone = copy.deepcopy(model)
    x = torch.randn(3, 16)
    assert torch.equal(clone(x), model(x))
    fresh = _mlp(seed=5)
    magnitude_prune(fresh, 0.5)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), model(x))


def test_sparsity_schedule_and_iterative_prune():
    levels = sparsity_schedule(0.9, 3)
    assert levels[-1] == pytest.approx(0.9)
    # each round removes the same fraction of what is left
    left = [1 - s for s in levels]
    assert left[1] / left[0] == pytest.approx(left[0])
    assert left[2] / left[1] == pytest.approx(left[0])
    model = _mlp()
    calls = []
    records = iterative_prune(model, 0.9, 3, fine_tune=lambda m: calls.append(1) or len(calls))
    assert [r["result"] for r in records] == [1, 2, 3]
    assert [r["sparsity"] for r in records] == pytest.approx(levels, abs=1e-3)


# --- structured pruning ---------------------------------------------------------------------


def test_remove_neurons_matches_hand_built_smaller_mlp():
    torch.manual_seed(0)
    model = _mlp(hidden=(8, 6))
    small = remove_neurons(model, 0.5)
    assert hidden_widths(small) == [4, 3]
    # by hand: keep the 4 (resp. 3) rows with the largest L1 norm of their weights (Li et al.)
    fc1, fc2, fc3 = (m for m in model if isinstance(m, nn.Linear))
    k1 = torch.sort(torch.topk(fc1.weight.abs().sum(1), 4).indices).values
    k2 = torch.sort(torch.topk(fc2.weight.abs().sum(1), 3).indices).values
    x = torch.rand(10, 16)
    h = torch.relu(x @ fc1.weight[k1].T + fc1.bias[k1])
    h = torch.relu(h @ fc2.weight[k2][:, k1].T + fc2.bias[k2])
    expected = h @ fc3.weight[:, k2].T + fc3.bias
    torch.testing.assert_close(small(x), expected)


def test_remove_neurons_keeps_outputs_when_removed_units_were_zero_mlp():
    model = _mlp(hidden=(40, 20))
    fc1, fc2, _ = (m for m in model if isinstance(m, nn.Linear))
    with torch.no_grad():
        dead1, dead2 = torch.randperm(40)[:20], torch.randperm(20)[:10]
        fc1.weight[dead1] = 0
        fc1.bias[dead1] = 0
        fc2.weight[dead2] = 0
        fc2.bias[dead2] = 0
    small = remove_neurons(model, 0.5)
    assert hidden_widths(small) == [20, 10]
    x = torch.rand(32, 16)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small == (16 * 20 + 20) + (20 * 10 + 10) + (10 * 5 + 5)


def _trained_bn_statistics(model, seed=0):
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 8, 8))
        for bn in (m for m in model if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_remove_neurons_keeps_outputs_when_removed_channels_were_zero_after_batchnorm():
    # gamma = beta = 0 makes a channel's output ReLU(0) = 0 in eval mode, whatever its filter:
    # removing it (filter, BatchNorm entries, next layer's inputs) must not change the outputs
    model = _trained_bn_statistics(_cnn(3))
    bn1, bn2 = (m for m in model if isinstance(m, nn.BatchNorm2d))
    dead1, dead2 = [0, 2, 5], [1, 3, 4, 7]
    with torch.no_grad():
        for bn, dead in ((bn1, dead1), (bn2, dead2)):
            bn.weight[dead] = 0.0
            bn.bias[dead] = 0.0
    small = remove_neurons(model, 0.5, importance="bn_scale").eval()
    assert hidden_widths(small) == [3, 4]
    keep1 = [c for c in range(6) if c not in dead1]
    keep2 = [c for c in range(8) if c not in dead2]
    conv1, sbn1, conv2, sbn2 = (m for m in small if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)))
    assert torch.equal(conv1.weight, model[0].weight[keep1])
    assert torch.equal(conv2.weight, model[4].weight[keep2][:, keep1])
    for new, old, keep in ((sbn1, bn1, keep1), (sbn2, bn2, keep2)):
        assert new.num_features == len(keep)
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(new, name), getattr(old, name)[keep])
    assert small[-1].in_features == 4 * 2 * 2
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-6, atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) == (
        3 * 9 + 2 * 3 + 4 * 3 * 9 + 2 * 4 + 4 * 4 * 10 + 10)


def test_remove_neurons_cnn_without_dead_channels_changes_the_outputs_and_leaves_input_alone():
    model = _trained_bn_statistics(_cnn(4))
    before = copy.deepcopy(model.state_dict())
    small = remove_neurons(model, 0.5)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert small.eval()(x).shape == model(x).shape == (5, 10)
        assert not torch.allclose(small(x), model(x))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_remove_neurons_on_masked_model_returns_dense_model_and_leaves_input_alone():
    model = _mlp()
    magnitude_prune(model, 0.5)
    before = copy.deepcopy(model.state_dict())
    small = remove_neurons(model, 0.25)
    assert all(isinstance(m.weight, nn.Parameter) for m in small if isinstance(m, nn.Linear))
    assert not any("parametrizations" in k for k in small.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert hidden_widths(small) == [30 - round(0.25 * 30), 20 - 5]


def _layer_with_rows(weights, biases) -> nn.Linear:
    layer = nn.Linear(len(weights[0]), len(weights))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights))
        layer.bias.copy_(torch.tensor(biases))
    return layer


def test_l1_importance_is_li_et_al_weights_only_and_the_bias_counts_only_on_request():
    # units 0 and 1 have the same weights; only their biases differ, and the bias decides the
    # ranking exactly when include_bias=True. Unit 2 has the largest weights and no bias.
    fc1 = _layer_with_rows([[1.0, -1.0], [-1.0, 1.0], [2.0, 1.0]], [5.0, 0.0, 0.0])
    model = nn.Sequential(fc1, nn.ReLU(), nn.Linear(3, 2))
    (weights_only,) = neuron_importance(model, "l1")
    assert weights_only.tolist() == [2.0, 2.0, 3.0]
    (with_bias,) = neuron_importance(model, "l1", include_bias=True)
    assert with_bias.tolist() == [7.0, 2.0, 3.0]
    x = torch.rand(4, 2)
    kept = remove_neurons(model, 1 / 3, include_bias=True)
    # unit 1 (|w| = 2, b = 0) goes: the bias of unit 0 saved it
    torch.testing.assert_close(kept[0].weight, fc1.weight[[0, 2]])
    torch.testing.assert_close(kept(x), model[2](torch.relu(fc1(x)) * torch.tensor([1.0, 0, 1])))
    assert hidden_widths(remove_neurons(model, 2 / 3)) == [1]
    assert torch.equal(remove_neurons(model, 2 / 3)[0].weight, fc1.weight[[2]])


def test_activation_importance_is_the_mean_output_after_the_relu():
    model = _mlp()
    x = torch.rand(50, 16)
    fc1, fc2 = model[1], model[3]
    with torch.no_grad():  # unit 0 never fires: a large pre-activation, all of it negative
        fc1.weight[0], fc1.bias[0] = -1.0, -1.0
    scores = neuron_importance(model, "activation", x)
    h1 = torch.relu(x @ fc1.weight.T + fc1.bias)
    torch.testing.assert_close(scores[0], h1.mean(0))
    torch.testing.assert_close(scores[1], torch.relu(h1 @ fc2.weight.T + fc2.bias).mean(0))
    assert scores[0][0] == 0 and scores[0].argmin() == 0  # the dead unit ranks last
    small = remove_neurons(model, 0.5, importance="activation", inputs=x)
    assert hidden_widths(small) == [15, 10]
    torch.testing.assert_close(small[1].weight, fc1.weight[scores[0].topk(15).indices.sort()[0]])


def test_activation_importance_of_channels_is_scored_after_batchnorm_and_relu_in_eval_mode():
    model = _trained_bn_statistics(_cnn(2)).train()  # scoring must use eval mode anyway
    x = torch.rand(6, 1, 8, 8)
    before = copy.deepcopy(model.state_dict())
    scores = neuron_importance(model, "activation", x)
    assert model.training, "the model's mode is restored"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"scoring changed {k} (BatchNorm statistics?)"
    model.eval()
    with torch.no_grad():
        a1 = torch.relu(model[1](model[0](x)))
        a2 = torch.relu(model[5](model[4](model[3](a1))))
    torch.testing.assert_close(scores[0], a1.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(scores[1], a2.mean(dim=(0, 2, 3)))


def test_taylor_importance_equals_sum_of_w_times_grad_over_each_neuron():
    # Molchanov et al.: |a ∂L/∂a| per example = |Σ_i w_i ∂L/∂w_i + b ∂L/∂b| over the unit's
    # parameters; checked with per-example gradients from torch.func
    from torch.func import functional_call, grad, vmap

    model = _mlp(7)
    x, y = torch.rand(20, 16), torch.randint(0, 5, (20,))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xb, yb):
        return nn.functional.cross_entropy(functional_call(model, p, (xb[None],)), yb[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    scores = neuron_importance(model, "taylor", x, targets=y)
    for layer, score in zip(("1", "3"), scores, strict=True):
        w, b = params[f"{layer}.weight"], params[f"{layer}.bias"]
        per_example = (g[f"{layer}.weight"] * w).sum(-1) + g[f"{layer}.bias"] * b
        torch.testing.assert_close(score, per_example.abs().mean(0), rtol=1e-4, atol=1e-7)


def test_bn_scale_random_and_global_scope():
    model = _trained_bn_statistics(_cnn(5))
    bn1, bn2 = (m for m in model if isinstance(m, nn.BatchNorm2d))
    scores = neuron_importance(model, "bn_scale")
    assert torch.equal(scores[0], bn1.weight.abs()) and torch.equal(scores[1], bn2.weight.abs())
    r1 = neuron_importance(model, "random", generator=torch.Generator().manual_seed(3))
    r2 = neuron_importance(model, "random", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(r1, r2, strict=True))
    with torch.no_grad():  # the 7 globally smallest scales: all 6 of layer 1 and 1 of layer 2
        bn1.weight.copy_(torch.linspace(0.01, 0.06, 6))
    small = remove_neurons(model, 7 / 14, "bn_scale", scope="global")
    assert hidden_widths(small) == [1, 7]  # at least one channel per layer is kept
    assert torch.equal(small[1].weight, bn1.weight[[5]])


def test_remove_neurons_amount_one_keeps_one_unit_and_zero_keeps_all():
    model = _mlp()
    assert hidden_widths(remove_neurons(model, 1.0)) == [1, 1]
    x = torch.rand(4, 16)
    torch.testing.assert_close(remove_neurons(model, 0.0)(x), model(x))


def test_make_permanent_on_a_copy_leaves_the_original_masked_model_working():
    # torch's remove_parametrizations would delete `weight` from the class a deepcopy shares
    model = _mlp()
    magnitude_prune(model, 0.6)
    clone = copy.deepcopy(model)
    make_permanent(clone)
    x = torch.rand(5, 16)
    assert torch.equal(clone(x), model(x))
    assert sparsity(model).overall == pytest.approx(0.6, abs=1e-3)
    assert type(clone[1]) is nn.Linear and "parametrizations" not in dict(clone[1].named_children())


def test_iterative_prune_continues_from_the_current_sparsity():
    model = _mlp()
    iterative_prune(model, 0.5, 2, fine_tune=lambda m: None)
    records = iterative_prune(model, 0.875, 2, fine_tune=lambda m: None)
    # remaining weights: 0.5 → 0.25 → 0.125, each round halving what is left
    assert [r["sparsity"] for r in records] == pytest.approx([0.75, 0.875], abs=1e-3)
    assert sparsity_schedule(0.875, 2, start=0.5) == pytest.approx([0.75, 0.875])


def test_set_mask_copies_a_mask_onto_another_network():
    source, target = _mlp(0), _mlp(1)
    magnitude_prune(source, 0.7)
    for (_, a), (_, b) in zip(_named(source), _named(target), strict=True):
        set_mask(b, get_mask(a))
        assert torch.all(b.weight[~get_mask(a)] == 0)
    assert sparsity(target).overall == pytest.approx(0.7, abs=1e-3)


def _named(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


# --- stacked models: masks and training ------------------------------------------------------


def test_stacked_mlp_forward_masks_and_unstack_match_the_separate_models():
    mlps = [_mlp(seed) for seed in range(3)]
    magnitude_prune(mlps[1], 0.6)
    stack = StackedMLP(mlps)
    x = torch.rand(3, 9, 16)
    out, hidden = stack(x, return_hidden=True)
    for k, m in enumerate(mlps):
        torch.testing.assert_close(out[k], m(x[k]))
        torch.testing.assert_close(hidden[0][k], torch.relu(m[1](x[k])))
        back = stack.unstack(k)
        assert not any("parametrizations" in key for key in back.state_dict())
        torch.testing.assert_close(back(x[k]), m(x[k]))
    assert torch.equal(stack.masks[0][1], get_mask(mlps[1][1]))
    assert bool(stack.masks[0][0].all())
    assert sparsity(mlps[1]).overall == pytest.approx(0.6, abs=1e-3)  # the source is unchanged


@pytest.mark.parametrize("scope, amount", [("global", 0.7), ("layer", 0.5),
                                           ("layer", [0.2, 0.6, 0.9])])
def test_magnitude_prune_on_a_stack_equals_pruning_each_model_alone(scope, amount):
    mlps = [_mlp(seed) for seed in range(4)]
    stack = StackedMLP(mlps)
    magnitude_prune(stack, amount, scope=scope)
    for k, m in enumerate(mlps):
        magnitude_prune(m, amount, scope=scope)
        for mask, (_, layer) in zip(stack.masks, _named(m), strict=True):
            assert torch.equal(mask[k], get_mask(layer))


def test_fit_stacked_follows_each_models_own_adam_run_with_its_mask():
    torch.manual_seed(0)
    x, y = torch.rand(50, 16), torch.randint(0, 5, (50,))
    mlps = [magnitude_prune(_mlp(seed), 0.5) for seed in range(3)]
    refs = copy.deepcopy(mlps)
    stack = StackedMLP(mlps)
    seeds = [3, 4, 5]
    fit_stacked(stack, x, y, seeds=seeds, epochs=3, lr=1e-2, batch_size=16)
    for k, model in enumerate(refs):  # the same run, one model, torch.optim.Adam
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(seeds[k])
        for _ in range(3):
            order = torch.randperm(50, generator=generator)
            for start in range(0, 50, 16):
                i = order[start:start + 16]
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x[i]), y[i]).backward()
                optimizer.step()
        got = [layer.weight for _, layer in _named(stack.unstack(k))]
        want = [layer.weight for _, layer in _named(model)]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            assert torch.equal(a == 0, b == 0)


def test_fit_stacked_per_model_data_and_after_step():
    torch.manual_seed(1)
    stack = StackedMLP([_mlp(0), _mlp(1)])
    x, y = torch.rand(2, 20, 16), torch.randint(0, 5, (2, 20))
    steps = []
    fit_stacked(stack, x, y, seeds=[0, 1], epochs=2, batch_size=20, per_model=True,
                after_step=steps.append)
    assert steps == [1, 2]
    single = StackedMLP([_mlp(1)])
    fit_stacked(single, x[1], y[1], seeds=[1], epochs=2, batch_size=20)
    torch.testing.assert_close(stack.weights[0][1], single.weights[0][0], rtol=1e-5, atol=1e-6)


def test_nm_mask_keeps_the_n_largest_of_every_group_of_m():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0, -1.0]])
    assert nm_mask(w).tolist() == [[False, True, True, False, True, True, False, False]]
    torch.manual_seed(0)
    big = torch.randn(6, 12)
    mask = nm_mask(big, 2, 4)
    groups = big.abs().reshape(6, 3, 4)
    kept = mask.reshape(6, 3, 4)
    assert bool((kept.sum(-1) == 2).all())
    # every kept weight is at least as large as every dropped one of its group
    assert bool((groups.masked_fill(~kept, float("inf")).min(-1).values
                 >= groups.masked_fill(kept, -1.0).max(-1).values).all())
    model = nm_prune(_mlp(2, hidden=(8, 4)))
    for _, layer in _named(model):
        assert bool((layer.weight.reshape(layer.weight.shape[0], -1, 4) != 0).sum(-1).le(2).all())
    assert sparsity(model).overall == pytest.approx(0.5)


def test_gradual_sparsity_is_zhu_and_gupta_cubic():
    assert gradual_sparsity(0, 0.9, 0, 100) == 0.0
    assert gradual_sparsity(100, 0.9, 0, 100) == 0.9
    assert gradual_sparsity(250, 0.9, 0, 100) == 0.9
    assert gradual_sparsity(50, 0.9, 0, 100) == pytest.approx(0.9 * (1 - 0.5**3))
    assert gradual_sparsity(30, 0.8, 10, 50, initial=0.2) == pytest.approx(
        0.8 + (0.2 - 0.8) * (1 - 20 / 40) ** 3)
    values = [gradual_sparsity(t, 0.9, 0, 100) for t in range(101)]
    assert values == sorted(values)
