"""Text for language models, with no download (chapter 5.2).

The corpus is the Python language reference that ships with every Python in the standard
library (``pydoc_data.topics``: about 465,000 characters in Python 3.11, 103 distinct), and a
second text for fine-tuning is the standard library's own source code (``inspect.getsource``).
The texts differ a little between Python versions; on one version every number is
reproducible.

A tokenizer turns text into integer ids and back: :class:`CharTokenizer` (one id per
character) and :class:`BPETokenizer`, a byte-pair encoding (Sennrich et al. 2016) trained from
scratch in a few dozen lines. :class:`WindowBatches` draws ``(input, next-token)`` batches for
``train.fit``; :func:`windows` cuts a split into evaluation windows; :func:`bits_per_character`
turns a model's loss into the unit in which models with different tokenizers can be compared.
:func:`train_language_model` is the one training recipe of chapter 5.2 (AdamW, linear warm-up
and cosine decay or a constant rate, gradient clipping), a thin layer over ``train.fit``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import _checks, train

STDLIB_MODULES = ("textwrap", "fractions", "heapq", "statistics", "string", "colorsys",
                  "difflib", "functools", "calendar", "dataclasses")  # fmt: skip
"""Pure-Python standard-library modules whose source is the fine-tuning text."""


def load_reference_text() -> str:
    """The Python language reference of ``pydoc_data.topics``: every topic, in sorted order,
    separated by a blank line."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics[name] for name in sorted(topics.topics))


def load_stdlib_source(modules: Sequence[str] = STDLIB_MODULES) -> str:
    """The source code of the standard-library ``modules`` (``inspect.getsource``), joined by
    blank lines: a second text, Python code instead of prose about Python."""
    if isinstance(modules, str) or not isinstance(modules, Iterable):
        raise TypeError(f"modules must be a sequence of module names, got {type(modules).__name__}")
    modules = list(modules)
    if not modules or not all(isinstance(m, str) for m in modules):
        raise ValueError(f"modules must be a non-empty sequence of module names, got {modules!r}")
    return "\n\n".join(inspect.getsource(importlib.import_module(name)) for name in modules)


class TextSplits(NamedTuple):
    """Three contiguous pieces of one text."""

    train: str
    validation: str
    test: str


def split_text(text: str, validation: float = 0.1, test: float = 0.1) -> TextSplits:
    """Cut ``text`` into contiguous train / validation / test pieces (in that order).

    Contiguous, not shuffled: windows drawn from a shuffled text would share characters with
    each other across splits, so validation would measure memorisation. The last ``test``
    fraction is the test split, the ``validation`` fraction before it the validation split.
    """
    _checks.instance("text", text, str)
    validation = _checks.fraction("validation", validation)
    test = _checks.fraction("test", test)
    if validation + test >= 1:
        raise ValueError(f"validation + test must be < 1, got {validation} + {test}")
    n = len(text)
    first, second = round(n * (1 - validation - test)), round(n * (1 - test))
    if min(first, second - first, n - second) < 2:
        raise ValueError(f"text must be long enough for three non-trivial splits, got {n} chars")
    return TextSplits(text[:first], text[first:second], text[second:])


class CharTokenizer:
    """One token per character: ``vocab`` is the sorted set of characters of ``text``."""

    def __init__(self, text: str) -> None:
        _checks.instance("text", text, str)
        if len(set(text)) < 2:
            raise ValueError(f"text must hold at least 2 distinct characters, got {len(set(text))}")
        self.vocab: list[str] = sorted(set(text))
        self._index = {ch: i for i, ch in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def token_lengths(self) -> torch.Tensor:
        """Characters per token (all ones here); see :func:`bits_per_character`."""
        return torch.tensor([len(t) for t in self.vocab])

    def encode(self, text: str, unknown: str = "raise") -> torch.Tensor:
        """Token ids of ``text``; a character outside the vocabulary raises ``ValueError``, or
        is dropped with ``unknown="drop"``."""
        _checks.instance("text", text, str)
        _checks.one_of("unknown", unknown, ("raise", "drop"))
        missing = set(text) - self._index.keys()
        if missing and unknown == "raise":
            raise ValueError(
                f"text must use only the tokenizer's {self.vocab_size} characters, got "
                f"{sorted(missing)[:10]!r} (pass unknown='drop' to skip them)"
            )
        return torch.tensor([self._index[ch] for ch in text if ch in self._index])

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of token ``ids``."""
        return "".join(self.vocab[i] for i in torch.as_tensor(ids).flatten().tolist())


def _merge(ids: np.ndarray, left: int, right: int, new: int) -> np.ndarray:
    """Replace every ``(left, right)`` pair of ``ids`` by ``new``, left to right, never
    overlapping (``a a a`` with pair ``(a, a)`` becomes ``new a``)."""
    at = np.flatnonzero((ids[:-1] == left) & (ids[1:] == right))
    if at.size == 0:
        return ids
    if left == right:  # in a run of overlapping matches keep the 1st, 3rd, 5th, ...
        starts = np.r_[True, np.diff(at) != 1]
        run_start = np.maximum.accumulate(np.where(starts, np.arange(at.size), 0))
        at = at[(np.arange(at.size) - run_start) % 2 == 0]
    out = ids.copy()
    out[at] = new
    return np.delete(out, at + 1)


class BPETokenizer:
    """Byte-pair encoding (Sennrich, Haddow & Birch 2016), from scratch (chapter 5.2).

    Training starts from the characters of ``alphabet`` and repeats: count every pair of
    adjacent tokens in the training text, make the most frequent pair a new token, replace it
    everywhere; until ``vocab_size`` tokens exist (or no pair occurs twice). Encoding applies
    the learned merges in the order they were learned. There is no pre-tokenization (a token may
    span a space), so runs of indentation and frequent phrases such as ``" the "`` become tokens.
    Ties between equally frequent pairs go to the smallest ids, so training is deterministic.
    """

    def __init__(self, vocab: list[str], merges: list[tuple[int, int]]) -> None:
        self.vocab = list(vocab)
        self.merges = [tuple(m) for m in merges]
        self._chars = CharTokenizer("".join(self.vocab[: len(self.vocab) - len(self.merges)]))

    @classmethod
    def train(cls, text: str, vocab_size: int, alphabet: str | None = None) -> BPETokenizer:
        """Learn ``vocab_size - len(alphabet)`` merges on ``text``; the base tokens are the
        characters of ``alphabet`` (default: those of ``text``)."""
        _checks.instance("text", text, str)
        _checks.instance("alphabet", alphabet, str, allow_none=True)
        chars = CharTokenizer(text if alphabet is None else alphabet)
        vocab_size = _checks.integer("vocab_size", vocab_size, chars.vocab_size)
        vocab, merges = list(chars.vocab), []
        ids = chars.encode(text).numpy().astype(np.int64)
        while len(vocab) < vocab_size and ids.size > 1:
            counts = np.bincount(ids[:-1] * vocab_size + ids[1:], minlength=vocab_size**2)
            best = int(counts.argmax())
            if counts[best] < 2:
                break
            left, right = divmod(best, vocab_size)
            ids = _merge(ids, left, right, len(vocab))
            merges.append((left, right))
            vocab.append(vocab[left] + vocab[right])
        return cls(vocab, merges)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def token_lengths(self) -> torch.Tensor:
        """Characters per token; see :func:`bits_per_character`."""
        return torch.tensor([len(t) for t in self.vocab])

    def encode(self, text: str, unknown: str = "raise") -> torch.Tensor:
        """Characters to ids, then every merge in the order it was learned."""
        ids = self._chars.encode(text, unknown).numpy().astype(np.int64)
        base = len(self.vocab) - len(self.merges)
        for new, (left, right) in enumerate(self.merges, start=base):
            ids = _merge(ids, left, right, new)
        return torch.from_numpy(ids)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        return "".join(self.vocab[i] for i in torch.as_tensor(ids).flatten().tolist())


class Corpus(NamedTuple):
    """A tokenizer and the token ids of the three splits of a text."""

    tokenizer: CharTokenizer | BPETokenizer
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor


def char_corpus(text: str | None = None, validation: float = 0.1, test: float = 0.1) -> Corpus:
    """The character-level corpus (default text: :func:`load_reference_text`).

    The alphabet is every character of the whole text — which characters exist, not how often
    they occur — so no split meets an unknown character.
    """
    text = load_reference_text() if text is None else text
    splits = split_text(text, validation, test)
    tokenizer = CharTokenizer(text)
    return Corpus(tokenizer, *(tokenizer.encode(part) for part in splits))


def bpe_corpus(vocab_size: int, text: str | None = None, validation: float = 0.1,
               test: float = 0.1) -> Corpus:  # fmt: skip
    """The same splits as :func:`char_corpus`, in byte-pair tokens learned on the training
    split only."""
    text = load_reference_text() if text is None else text
    splits = split_text(text, validation, test)
    tokenizer = BPETokenizer.train(splits.train, vocab_size, alphabet=text)
    return Corpus(tokenizer, *(tokenizer.encode(part) for part in splits))


def encode_corpus(tokenizer: CharTokenizer | BPETokenizer, text: str, validation: float = 0.1,
                  test: float = 0.1, unknown: str = "raise") -> Corpus:  # fmt: skip
    """A new text in an existing tokenizer's ids (fine-tuning a trained model on it), split as
    :func:`split_text` does; ``unknown="drop"`` skips characters the tokenizer lacks."""
    _checks.instance("tokenizer", tokenizer, (CharTokenizer, BPETokenizer),
                     "a CharTokenizer or BPETokenizer")  # fmt: skip
    splits = split_text(text, validation, test)
    return Corpus(tokenizer, *(tokenizer.encode(part, unknown) for part in splits))


def _check_ids(name: str, ids, context: int) -> torch.Tensor:
    _checks.tensor(name, ids, ndim=1)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {ids.dtype}")
    if len(ids) < context + 1:
        raise ValueError(f"{name} must hold at least context + 1 = {context + 1} tokens, "
                         f"got {len(ids)}")  # fmt: skip
    return ids


class WindowBatches:
    """``steps`` random batches of ``(inputs, targets)`` per pass, for ``train.fit``:
    ``inputs = ids[i : i + context]`` and ``targets = ids[i + 1 : i + context + 1]`` (each
    position's next token) at ``batch_size`` random offsets ``i``.

    Each pass draws new offsets from one generator seeded with ``seed``, so a run is
    reproducible and two passes differ. ``len()`` is ``steps``.
    """

    def __init__(self, ids: torch.Tensor, context: int, batch_size: int, steps: int,
                 seed: int = 0) -> None:  # fmt: skip
        self.context = _checks.positive_int("context", context)
        self.ids = _check_ids("ids", ids, self.context).long()
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.steps = _checks.positive_int("steps", steps)
        self.generator = torch.Generator().manual_seed(_checks.integer("seed", seed, 0))
        self._offsets = torch.arange(self.context + 1)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            starts = torch.randint(len(self.ids) - self.context, (self.batch_size, 1),
                                   generator=self.generator)  # fmt: skip
            chunk = self.ids[starts + self._offsets]
            yield chunk[:, :-1], chunk[:, 1:]


def windows(ids: torch.Tensor, context: int, batch_size: int = 64,
            limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Non-overlapping evaluation windows of a split, in order, as ``(inputs, targets)``
    batches: every token after the first is predicted once (from the window it falls in).
    ``limit`` keeps only the first ``limit`` tokens (a quicker, smaller validation set)."""
    context = _checks.positive_int("context", context)
    batch_size = _checks.positive_int("batch_size", batch_size)
    limit = _checks.integer("limit", limit, context + 1, allow_none=True)
    ids = _check_ids("ids", ids, context).long()[:limit]
    count = (len(ids) - 1) // context
    inputs = ids[: count * context].view(count, context)
    targets = ids[1 : count * context + 1].view(count, context)
    return [(inputs[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, count, batch_size)]  # fmt: skip


def _ngram_keys(ids: torch.Tensor, n: int, base: int) -> torch.Tensor:
    """One integer per n-gram of ``ids``: ``Σ_j ids[i + j] · base^(n − 1 − j)``."""
    keys = torch.zeros(len(ids) - n + 1, dtype=torch.int64)
    for j in range(n):
        keys = keys * base + ids[j : len(ids) - n + 1 + j]
    return keys


def _counts(table: tuple[torch.Tensor, torch.Tensor], queries: torch.Tensor) -> torch.Tensor:
    keys, counts = table
    at = torch.searchsorted(keys, queries).clamp(max=len(keys) - 1)
    return torch.where(keys[at] == queries, counts[at], 0)


def ngram_bits(train_ids: torch.Tensor, eval_ids: torch.Tensor, order: int, vocab_size: int,
               smoothing: float = 0.1) -> float:  # fmt: skip
    """Bits per token of a count-based n-gram model, the baseline a language model must beat:

    ``p(x_t | h) = (N(h, x_t) + k) / (N(h) + k·V)`` with ``h`` the previous ``order − 1``
    tokens, ``N`` counts in ``train_ids``, add-``k`` smoothing (``k = smoothing``), averaged
    as ``−log₂ p`` over every position of ``eval_ids`` that has a full history. With
    character ids this is bits per character; ``order=1`` is the unigram model.
    """
    order = _checks.integer("order", order, 1, 6)
    vocab_size = _checks.integer("vocab_size", vocab_size, 2)
    if vocab_size**order >= 2**62:
        raise ValueError(f"vocab_size ** order must be < 2**62, got {vocab_size}**{order}")
    k = _checks.positive("smoothing", smoothing)
    train_ids = _check_ids("train_ids", train_ids, order).long()
    eval_ids = _check_ids("eval_ids", eval_ids, order).long()
    full = _ngram_keys(train_ids, order, vocab_size)
    tables = [torch.unique(keys, return_counts=True) for keys in (full, full // vocab_size)]
    queries = _ngram_keys(eval_ids, order, vocab_size)
    seen, contexts = _counts(tables[0], queries), _counts(tables[1], queries // vocab_size)
    p = (seen.double() + k) / (contexts.double() + k * vocab_size)
    return float(-torch.log2(p).mean())


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token) of ``(batch, T, vocab)`` logits."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


@torch.no_grad()
def bits_per_character(model: nn.Module, batches: Iterable, token_lengths: torch.Tensor) -> float:
    """Bits per character of ``model`` on ``batches`` of ``(inputs, targets)``:

    ``bpc = Σ_tokens −ln p(token) / (ln 2 · Σ_tokens characters(token))``

    The loss of a character model is in nats per character; a byte-pair model's is in nats per
    *token*, and a token holds several characters, so only bits per character compares the two
    (``token_lengths[i]`` is the number of characters of token ``i``)."""
    _checks.module("model", model)
    _checks.batches("batches", batches)
    _checks.tensor("token_lengths", token_lengths, ndim=1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    nats, chars = 0.0, 0
    for inputs, targets in batches:
        logits = model(inputs.to(device)).float()
        nats += F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(),
                                reduction="sum").item()  # fmt: skip
        chars += int(token_lengths[targets].sum())
    model.train(was_training)
    if chars == 0:
        raise ValueError("batches must hold at least one target token")
    return nats / chars / math.log(2)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """Linear warm-up, then cosine decay to 0 (Loshchilov & Hutter 2017), stepped per step:

    ``lr_t = lr · (t + 1) / w`` for ``t < w``, then
    ``lr_t = lr · ½ (1 + cos(π (t − w) / (T − w)))`` until ``t = T`` (0 afterwards)."""
    _checks.optimizer("optimizer", optimizer)
    total_steps = _checks.positive_int("total_steps", total_steps)
    warmup_steps = _checks.integer("warmup_steps", warmup_steps, 0, total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_language_model(
    model: nn.Module,
    corpus: Corpus,
    steps: int,
    *,
    batch_size: int = 16,
    lr: float = 3e-3,
    schedule: str = "warmup_cosine",
    warmup_steps: int | None = None,
    clip_grad_norm: float | None = 1.0,
    weight_decay: float = 0.1,
    seed: int = 0,
    evals: int = 8,
    eval_tokens: int | None = 8192,
    loss_hook=None,
    parameters: Iterable[nn.Parameter] | None = None,
    device: str | torch.device | None = None,
) -> train.History:
    """Train ``model`` (with a ``context`` attribute, e.g. a ``transformer.GPT``) on
    ``corpus.train`` for ``steps`` optimizer steps of ``batch_size`` random windows; the
    recipe of chapter 5.2, through ``train.fit``.

    AdamW (``betas=(0.9, 0.99)``, decoupled ``weight_decay``) at peak rate ``lr``;
    ``schedule="warmup_cosine"`` (:func:`warmup_cosine`, ``warmup_steps`` default
    ``steps // 10``) or ``"constant"``; the gradient's total norm clipped to
    ``clip_grad_norm`` (``None``: no clipping; the norms are recorded either way). ``seed``
    fixes the batches (seed the model's initialization before building it). The validation
    loss is measured ``evals`` times, on the first ``eval_tokens`` tokens of
    ``corpus.validation``. ``loss_hook`` and ``parameters`` (default: those that require a
    gradient) are passed on (distillation, LoRA); ``device`` as in ``fit`` (default: the
    best available). Returns ``fit``'s history; ``steps`` must be a multiple of ``evals``.
    """
    _checks.module("model", model)
    _checks.instance("corpus", corpus, Corpus, "a text.Corpus")
    context = _checks.positive_int("model.context", getattr(model, "context", None))
    steps = _checks.positive_int("steps", steps)
    evals = _checks.positive_int("evals", evals)
    if steps % evals:
        raise ValueError(f"steps must be a multiple of evals = {evals}, got {steps}")
    _checks.one_of("schedule", schedule, ("warmup_cosine", "constant"))
    warmup_steps = steps // 10 if warmup_steps is None else warmup_steps
    params = [p for p in model.parameters() if p.requires_grad] if parameters is None else (
        list(parameters))  # fmt: skip
    if not params:
        raise ValueError("model must have parameters that require a gradient, got none")
    optimizer = torch.optim.AdamW(params, lr=_checks.positive("lr", lr), betas=(0.9, 0.99),
                                  weight_decay=_checks.real("weight_decay", weight_decay, 0),
                                  foreach=True)  # one kernel per step, not one per tensor
    scheduler = warmup_cosine(optimizer, warmup_steps, steps) if schedule != "constant" else None
    batches = WindowBatches(corpus.train, context, batch_size, steps // evals, seed)
    validation = windows(corpus.validation, context, 64, limit=eval_tokens)
    return train.fit(model, batches, validation, optimizer, lm_loss, evals, device,
                     scheduler=scheduler, scheduler_interval="step",
                     clip_grad_norm=clip_grad_norm, loss_hook=loss_hook,
                     progress=False)  # fmt: skip
