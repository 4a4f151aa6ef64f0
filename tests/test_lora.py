"""course_lib.lora: frozen base, rank·(in+out) adapters, no change at start, exact merge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.lora import LoRALinear, add_lora, linear_names, lora_parameters, merge_lora
from course_lib.transformer import GPT

TARGETS = ["blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.1.mlp.0", "head"]


def _gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(vocab_size=13, context=12, layers=2, heads=2, width=16)


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_trainable_parameters_are_rank_times_in_plus_out():
    model = _gpt()
    sizes = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if n in TARGETS}
    add_lora(model, rank=3, alpha=6.0, targets=TARGETS)
    expected = sum(3 * (i + o) for i, o in sizes.values())
    assert _trainable(model) == lora_parameters(model) == expected
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{t}.lora_{ab}" for t in TARGETS for ab in "AB"}


def test_adapted_model_starts_as_the_base_model():
    model = _gpt(1)
    x = torch.randint(0, 13, (3, 12))
    before = model(x)
    add_lora(model, rank=4, alpha=8.0, targets=TARGETS)
    assert torch.equal(model(x), before)


def test_training_moves_only_the_adapters_and_merging_keeps_outputs():
    model = _gpt(2)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    add_lora(model, rank=2, alpha=4.0, targets=TARGETS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randint(0, 13, (4, 12)), torch.randint(0, 13, (4, 12))
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, param in model.named_parameters():
        if "lora_" not in name:
            original = name.replace(".base.", ".")
            assert torch.equal(param, frozen[original]), f"{name} changed"
    adapted = model(x)
    assert not torch.allclose(adapted, _gpt(2)(x))  # training changed the outputs
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    # the merged head has its own weight now: merging a tied layer unties it
    assert sorted(n for n, _ in model.named_parameters()) == sorted([*frozen, "head.weight"])
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.token.weight, frozen["token.weight"])  # tied, untouched


def test_merge_is_the_formula():
    torch.manual_seed(3)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, rank=2, alpha=3.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    want = base.weight + (3.0 / 2) * layer.lora_B @ layer.lora_A
    model = nn.Sequential(layer)
    merge_lora(model)
    torch.testing.assert_close(model[0].weight, want)


def test_works_on_any_module_with_linear_layers():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    assert linear_names(model) == ["0", "2"]
    x = torch.randn(5, 8)
    before = model(x)
    add_lora(model, 2, 1.0, ["2"])
    assert _trainable(model) == 2 * (16 + 3)
    assert torch.equal(model(x), before)


def test_bad_arguments():
    model = _gpt()
    with pytest.raises(ValueError, match="targets must be names of model.named_modules"):
        add_lora(model, 2, 1.0, ["blocks.9.attn.qkv"])
    with pytest.raises(ValueError, match="targets must name nn.Linear layers"):
        add_lora(model, 2, 1.0, ["blocks.0.ln1"])
    with pytest.raises(TypeError, match="targets must be a list of module names"):
        add_lora(model, 2, 1.0, "head")
    with pytest.raises(ValueError, match="rank must be <= min"):
        add_lora(model, 17, 1.0, ["head"])
    with pytest.raises(ValueError, match="alpha must be"):
        add_lora(model, 2, 0.0, ["head"])
    with pytest.raises(ValueError, match="at least one LoRALinear"):
        merge_lora(_gpt())
