"""course_lib.transformer against PyTorch's attention and against uncached generation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import compress
from course_lib.transformer import (
    GPT,
    attention,
    generate,
    prune_heads,
    set_head_mask,
)


def _model(seed=0, context=16, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"vocab_size": 11, "context": context, "layers": 2, "heads": 4, "width": 32, **kwargs}
    return GPT(**kwargs).eval()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 3, 7, 8), (3, 2, 33, 16)])
def test_written_out_attention_equals_sdpa(shape, causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(attention(q, k, v, causal=causal), want, atol=1e-5, rtol=0)


def test_attention_is_the_formula():
    torch.manual_seed(1)
    q, k, v = (torch.randn(5, 3, dtype=torch.float64) for _ in range(3))
    scores = q @ k.T / math.sqrt(3)
    scores = scores + torch.triu(torch.full((5, 5), float("-inf"), dtype=torch.float64), 1)
    want = torch.softmax(scores, dim=-1) @ v
    torch.testing.assert_close(attention(q, k, v), want)
    assert torch.allclose(attention(q, k, v)[0], v[0])  # the first query sees only itself


def test_attention_with_fewer_queries_sees_the_prefix():
    """Queries are the last T_q positions: the rows of the square computation."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 9, 8) for _ in range(3))
    full = attention(q, k, v)
    torch.testing.assert_close(attention(q[:, -3:], k, v), full[:, -3:], atol=1e-6, rtol=0)


def test_attention_rejects_bad_shapes():
    q = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="k must have shape"):
        attention(q, torch.randn(2, 4, 7), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="q must have at most"):
        attention(torch.randn(2, 5, 8), q, q)
    with pytest.raises(TypeError, match="causal must be a bool"):
        attention(q, q, q, causal=1)


def test_gpt_shapes_parameters_and_tied_embeddings():
    model = _model()
    logits = model(torch.randint(0, 11, (3, 16)))
    assert logits.shape == (3, 16, 11)
    assert model.head.weight is model.token.weight
    width, vocab, context, layers = 32, 11, 16, 2
    per_block = 4 * width + (3 * width * width + 3 * width) + (width * width + width) + (
        8 * width * width + 4 * width + width)  # 2 LayerNorms, qkv, proj, MLP
    assert sum(p.numel() for p in model.parameters()) == (
        vocab * width + context * width + layers * per_block + 2 * width)
    untied = _model(tie_weights=False)
    assert sum(p.numel() for p in untied.parameters()) == sum(
        p.numel() for p in model.parameters()) + vocab * width


def test_gpt_is_causal():
    model = _model()
    x = torch.randint(0, 11, (1, 16))
    changed = x.clone()
    changed[0, 10] = (x[0, 10] + 1) % 11
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])  # earlier positions cannot see position 10
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_written_out_attention_in_the_model_equals_sdpa():
    model = _model()
    x = torch.randint(0, 11, (2, 16))
    fused = model(x)
    written = model.set_attention("written")(x)
    torch.testing.assert_close(written, fused, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="implementation must be one of"):
        model.set_attention("flash")


def test_cached_forward_equals_full_forward():
    model = _model()
    x = torch.randint(0, 11, (2, 12))
    full = model(x)
    cache = [[] for _ in model.blocks]
    pieces = [model(x[:, :5], cache), model(x[:, 5:6], cache), model(x[:, 6:12], cache)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="fit the context"):
        model(torch.randint(0, 11, (2, 5)), cache)


@pytest.mark.parametrize("prompt_len, new", [(1, 10), (5, 30), (20, 8)])
def test_greedy_generation_with_cache_equals_without(prompt_len, new):
    """Within the context, past it (the window slides) and with a prompt longer than it."""
    model = _model(seed=3)
    prompt = torch.randint(0, 11, (2, prompt_len), generator=torch.Generator().manual_seed(0))
    cached = generate(model, prompt, new, temperature=0, use_cache=True)
    uncached = generate(model, prompt, new, temperature=0, use_cache=False)
    assert cached.shape == (2, prompt_len + new)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :prompt_len], prompt)


def test_sampling_is_reproducible_and_1d_prompts_work():
    model = _model(seed=4)
    prompt = torch.tensor([1, 2, 3])
    runs = [generate(model, prompt, 20, temperature=0.8, generator=torch.Generator().manual_seed(7))
            for _ in range(2)]  # fmt: skip
    assert runs[0].shape == (23,) and torch.equal(runs[0], runs[1])
    assert model.training is False
    model.train()
    generate(model, prompt, 1)
    assert model.training is True  # generate restores the mode


def test_generate_rejects_bad_arguments():
    model = _model()
    prompt = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="temperature must be"):
        generate(model, prompt, 3, temperature=-1)
    with pytest.raises(TypeError, match="prompt must be an integer tensor"):
        generate(model, prompt.float(), 3)
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        generate(model, prompt, -1)
    with pytest.raises(TypeError, match="model must be a course_lib.transformer.GPT"):
        generate(torch.nn.Linear(2, 2), prompt, 3)
    with pytest.raises(ValueError, match="width must be a multiple of heads"):
        GPT(11, 8, 1, 3, 32)
    with pytest.raises(ValueError, match="vocab_size must be"):
        GPT(1, 8, 1, 2, 32)


def test_head_mask_and_pruned_heads_agree():
    model = _model(seed=5)
    x = torch.randint(0, 11, (2, 16))
    mask = torch.ones(2, 4)
    mask[0, 1] = mask[1, 0] = mask[1, 3] = 0
    masked = set_head_mask(model, mask)(x)
    set_head_mask(model, None)
    pruned = prune_heads(model, {0: [1], 1: [0, 3]})
    torch.testing.assert_close(pruned(x), masked, atol=1e-5, rtol=0)
    assert [b.attn.heads for b in pruned.blocks] == [3, 2]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    removed = count(model) - count(pruned)
    head_dim, width = 8, 32
    assert removed == 3 * (3 * (width * head_dim + head_dim) + head_dim * width)
    assert not torch.allclose(model(x), masked)  # the original is untouched
    cached = generate(pruned, x[0, :4], 10, temperature=0)
    assert torch.equal(cached, generate(pruned, x[0, :4], 10, temperature=0, use_cache=False))
    with pytest.raises(ValueError, match="must leave at least one head"):
        prune_heads(model, {0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="mask must have shape"):
        set_head_mask(model, torch.ones(3, 4))


def test_int8_model_generates():
    model = _model(seed=6)
    quantized = compress.quantize_dynamic_int8(model)
    prompt = torch.tensor([[1, 2, 3]])
    out = generate(quantized, prompt, 12, temperature=0)
    assert torch.equal(out, generate(quantized, prompt, 12, temperature=0, use_cache=False))
    x = torch.randint(0, 11, (2, 16))
    assert (quantized(x) - model(x)).abs().max() < 0.05  # int8 weights: close, not equal
    assert compress.linear_weight_bytes(quantized) < compress.linear_weight_bytes(model) / 3
