"""A small GPT-style language model, written to be read (chapter 5.2).

The model of Vaswani et al. (2017) as GPT-2 (Radford et al. 2019) uses it: token and learned
position embeddings, ``layers`` pre-norm blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))``, a final
LayerNorm and a linear head over the vocabulary. Attention is causal: position ``t`` sees
positions ``<= t`` only, so one forward pass over ``T`` tokens gives ``T`` next-token predictions.

Choices, stated once:

- **Tied embeddings.** The head's weight *is* the token embedding (``head.weight is
  token.weight``), as in GPT-2: it saves ``vocab_size · width`` parameters and, for a small
  corpus, regularises both. ``tie_weights=False`` unties them.
- **Attention.** :func:`attention` writes ``softmax(QKᵀ/√d + M) V`` out; the model calls
  ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels) unless
  :meth:`GPT.set_attention` selects the written-out version. Tests check that the two agree.
- **KV cache.** :func:`generate` keeps every layer's keys and values, so each new token costs one
  position instead of a pass over the whole window. The positions are learned and absolute, so
  the cache is valid while the sequence fits in ``context``; once the window slides, every step
  recomputes the window (exactly what uncached generation does), so the outputs never differ.
- **Head gates.** Every attention layer multiplies head ``h``'s output by ``head_gate[h]`` (a
  buffer of ones); :func:`set_head_mask` zeroes heads to measure what they are worth, and
  :func:`prune_heads` removes them for good (a smaller dense model), as in Michel et al. (2019).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import _checks

KVCache = list  # one (keys, values) pair per layer, each (batch, heads, length, head_dim)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True):
    """Scaled dot-product attention written from the formula (chapter 5.2):

    ``softmax(Q Kᵀ / √d + M) V``

    with ``q`` of shape ``(..., T_q, d)``, ``k`` and ``v`` of shape ``(..., T_k, d)``. With
    ``causal=True`` the mask ``M`` is ``-inf`` where a query would see a later key. Queries are
    the *last* ``T_q`` positions of the ``T_k`` keys (query ``i`` sits at position
    ``T_k - T_q + i``), which is what a KV cache needs; for ``T_q = T_k`` this is the usual lower
    triangle and equals ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``.
    """
    _checks.tensor("q", q, floating=True)
    _checks.tensor("k", k, floating=True)
    _checks.tensor("v", v, floating=True)
    _checks.flag("causal", causal)
    if q.ndim < 2 or k.shape[:-2] != q.shape[:-2] or k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"k must have shape (..., T_k, {q.shape[-1]}) matching q {tuple(q.shape)}, "
            f"got {tuple(k.shape)}"
        )
    if v.shape[:-1] != k.shape[:-1]:
        raise ValueError(
            f"v must have shape (..., {k.shape[-2]}, d_v) like k, got {tuple(v.shape)}"
        )
    t_q, t_k = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        if t_q > t_k:
            raise ValueError(f"q must have at most T_k = {t_k} positions when causal, got {t_q}")
        allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril(t_k - t_q)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1) @ v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one ``Linear`` makes queries, keys and values for all
    heads (``qkv``), another mixes the heads' outputs (``proj``)."""

    def __init__(self, width: int, heads: int, head_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim if head_dim is not None else width // heads
        inner = heads * self.head_dim
        self.qkv = nn.Linear(width, 3 * inner)
        self.proj = nn.Linear(inner, width)
        self.register_buffer("head_gate", torch.ones(heads))
        self.sdpa = True

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (
            self.qkv(x)
            .view(batch, length, 3, self.heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)  # (3, batch, heads, length, head_dim)
        )
        past = 0
        if cache is not None:
            if cache:  # keys and values of earlier positions
                past = cache[0].shape[-2]
                k = torch.cat([cache[0], k], dim=-2)
                v = torch.cat([cache[1], v], dim=-2)
            cache[:] = [k, v]
        if self.sdpa:
            if past == 0 or length == 1:  # square causal mask, or one query that sees every key
                y = F.scaled_dot_product_attention(q, k, v, is_causal=past == 0)
            else:  # several new queries after a cached prefix: the mask is offset
                mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.tril(past))
        else:
            y = attention(q, k, v, causal=True)
        y = y * self.head_gate.view(1, -1, 1, 1).to(y.dtype)
        return self.proj(y.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A GPT-style decoder (chapter 5.2): ``logits = head(LN(blocks(token(x) + position(t))))``.

    ``vocab_size`` tokens, windows of at most ``context`` positions, ``layers`` blocks of
    ``heads`` attention heads each, ``width`` features (divisible by ``heads``). Weights start
    as in GPT-2: normal with standard deviation 0.02, the residual projections scaled by
    ``1/√(2·layers)``. ``forward(idx)`` takes ``(batch, T)`` token ids and returns
    ``(batch, T, vocab_size)`` logits; ``forward(idx, cache)`` continues from a KV cache
    (see :func:`generate`).
    """

    def __init__(
        self,
        vocab_size: int,
        context: int,
        layers: int,
        heads: int,
        width: int,
        *,
        mlp_ratio: int = 4,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        vocab_size = _checks.integer("vocab_size", vocab_size, 2)
        context = _checks.positive_int("context", context)
        layers = _checks.positive_int("layers", layers)
        heads = _checks.positive_int("heads", heads)
        width = _checks.positive_int("width", width)
        mlp_ratio = _checks.positive_int("mlp_ratio", mlp_ratio)
        tie_weights = _checks.flag("tie_weights", tie_weights)
        if width % heads:
            raise ValueError(f"width must be a multiple of heads = {heads}, got {width}")
        self.vocab_size, self.context = vocab_size, context
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        for name, parameter in self.named_parameters():
            if name.endswith("weight") and parameter.ndim == 2:
                residual = name.endswith(("proj.weight", "mlp.2.weight"))
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * layers) if residual else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)
        if tie_weights:
            self.head.weight = self.token.weight

    def set_attention(self, implementation: str) -> GPT:
        """``"sdpa"`` (``F.scaled_dot_product_attention``) or ``"written"`` (:func:`attention`)."""
        _checks.one_of("implementation", implementation, ("sdpa", "written"))
        for block in self.blocks:
            block.attn.sdpa = implementation == "sdpa"
        return self

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if idx.ndim != 2:
            raise ValueError(
                f"idx must be a 2-D tensor (batch, T) of token ids, got shape {tuple(idx.shape)}"
            )
        past = cache[0][0].shape[-2] if cache and cache[0] else 0
        length = idx.shape[1]
        if past + length > self.context:
            raise ValueError(
                f"idx must fit the context: {past} cached + {length} new positions > {self.context}"
            )
        positions = torch.arange(past, past + length, device=idx.device)
        x = self.token(idx) + self.position(positions)
        for index, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[index])
        return self.head(self.norm(x))


def _check_gpt(model) -> GPT:
    return _checks.instance("model", model, GPT, "a course_lib.transformer.GPT")


def _next_token(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue ``prompt`` by ``max_new_tokens`` tokens, one at a time (chapter 5.2).

    Each step feeds the model the last ``context`` tokens and draws the next token from
    ``softmax(logits / temperature)`` (``temperature=0``: the most likely token, greedy).
    ``use_cache=True`` keeps every layer's keys and values (the KV cache): after the prompt,
    each step runs the model on *one* new position instead of the whole window, turning the
    cost of ``n`` new tokens from ``O(n²)`` positions into ``O(n)``. While the window slides
    (sequence longer than ``context``), each step recomputes it, as uncached generation does.
    Returns ``prompt`` followed by the new tokens (1-D in, 1-D out; 2-D ``(batch, T)`` too).
    """
    model = _check_gpt(model)
    _checks.tensor("prompt", prompt, ndim=(1, 2), nonempty=True)
    if prompt.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"prompt must be an integer tensor of token ids, got dtype {prompt.dtype}")
    max_new_tokens = _checks.integer("max_new_tokens", max_new_tokens, 0)
    temperature = _checks.real("temperature", temperature, 0)
    use_cache = _checks.flag("use_cache", use_cache)
    _checks.instance("generator", generator, torch.Generator, allow_none=True)
    squeeze = prompt.ndim == 1
    tokens = prompt.long().unsqueeze(0) if squeeze else prompt.long()
    tokens = tokens.to(model.token.weight.device)
    was_training = model.training
    model.eval()
    cache: KVCache | None = None
    for _ in range(max_new_tokens):
        window = tokens[:, -model.context :]
        if not use_cache:
            logits = model(window)
        elif cache is not None and tokens.shape[1] <= model.context:
            logits = model(tokens[:, -1:], cache)  # one new position; the rest is cached
        else:  # first step, or the window slid: (re)fill the cache from the whole window
            cache = [[] for _ in model.blocks]
            logits = model(window, cache)
        tokens = torch.cat([tokens, _next_token(logits[:, -1], temperature, generator)], dim=1)
    model.train(was_training)
    return tokens[0] if squeeze else tokens


def set_head_mask(model: GPT, mask: torch.Tensor | None) -> GPT:
    """Gate every attention head: ``mask[layer, head]`` multiplies that head's output
    (1 keeps it, 0 silences it); ``None`` restores all heads. Returns ``model``."""
    model = _check_gpt(model)
    shape = (len(model.blocks), max(b.attn.heads for b in model.blocks))
    if mask is None:
        for block in model.blocks:
            block.attn.head_gate.fill_(1.0)
        return model
    _checks.tensor("mask", mask, ndim=2)
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"mask must have shape (layers, heads) = {shape}, got {tuple(mask.shape)}"
        )
    for layer, block in enumerate(model.blocks):
        block.attn.head_gate.copy_(mask[layer, : block.attn.heads].to(block.attn.head_gate))
    return model


def prune_heads(model: GPT, heads: Mapping[int, Sequence[int]]) -> GPT:
    """A copy of ``model`` with the attention heads ``heads[layer]`` *removed* (chapter 5.2):
    their rows of ``qkv`` and columns of ``proj`` are cut out, so the copy is smaller and its
    outputs equal the original's with those heads' gates set to 0."""
    model = _check_gpt(model)
    _checks.instance("heads", heads, Mapping, "a dict {layer: [head, ...]}")
    pruned = copy.deepcopy(model)
    for layer, removed in heads.items():
        _checks.integer("heads (each layer)", layer, 0, len(model.blocks) - 1)
        attn = pruned.blocks[layer].attn
        removed = set(_checks.ints(f"heads[{layer}]", removed, 0, nonempty=False))
        if not removed:
            continue
        if max(removed) >= attn.heads:
            raise ValueError(
                f"heads[{layer}] must be head indices < {attn.heads}, got {sorted(removed)}"
            )
        keep = [h for h in range(attn.heads) if h not in removed]
        if not keep:
            raise ValueError(f"heads[{layer}] must leave at least one head, got all {attn.heads}")
        d, inner = attn.head_dim, attn.heads * attn.head_dim
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
        rows = torch.cat([cols + part * inner for part in range(3)])  # q, k and v rows
        qkv = nn.Linear(attn.qkv.in_features, len(rows)).to(attn.qkv.weight)
        proj = nn.Linear(len(cols), attn.proj.out_features).to(attn.proj.weight)
        with torch.no_grad():
            qkv.weight.copy_(attn.qkv.weight[rows])
            qkv.bias.copy_(attn.qkv.bias[rows])
            proj.weight.copy_(attn.proj.weight[:, cols] * attn.head_gate[keep].repeat_interleave(d))
            proj.bias.copy_(attn.proj.bias)
        attn.qkv, attn.proj, attn.heads = qkv, proj, len(keep)
        attn.head_gate = torch.ones(len(keep), device=attn.head_gate.device)
    return pruned
