"""course_lib.text: the offline corpus, tokenizers (BPE against a plain-Python reference),
batches and bits per character."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch import nn

from course_lib import text


def _reference_bpe(s: str, vocab_size: int) -> list[str]:
    """Textbook BPE on a list of strings, with the same tie rule (smallest ids first)."""
    vocab = sorted(set(s))
    tokens = list(s)
    while len(vocab) < vocab_size:
        index = {t: i for i, t in enumerate(vocab)}
        pairs = Counter(zip(tokens, tokens[1:]))
        if not pairs:
            break
        best = max(pairs.values())
        if best < 2:
            break
        left, right = min((p for p, c in pairs.items() if c == best),
                          key=lambda p: (index[p[0]], index[p[1]]))  # fmt: skip
        merged, i = [], 0
        while i < len(tokens):
            if i + 1 < len(tokens) and tokens[i] == left and tokens[i + 1] == right:
                merged.append(left + right)
                i += 2
            else:
                merged.append(tokens[i])
                i += 1
        tokens = merged
        vocab.append(left + right)
    return tokens


def test_reference_text_ships_with_python():
    corpus = text.load_reference_text()
    assert len(corpus) > 300_000
    assert 80 <= len(set(corpus)) <= 200
    assert "assert" in corpus and "lambda" in corpus
    assert "def " in text.load_stdlib_source(["textwrap"])
    with pytest.raises(TypeError, match="modules must be a sequence"):
        text.load_stdlib_source("textwrap")


def test_splits_are_contiguous_and_complete():
    s = "".join(chr(97 + i % 26) for i in range(1000))
    parts = text.split_text(s, validation=0.2, test=0.1)
    assert "".join(parts) == s
    assert [len(p) for p in parts] == [700, 200, 100]
    with pytest.raises(ValueError, match="validation \\+ test must be < 1"):
        text.split_text(s, 0.6, 0.5)
    with pytest.raises(ValueError, match="validation must be"):
        text.split_text(s, 0.0, 0.1)


def test_char_tokenizer_round_trip_and_unknown_characters():
    tok = text.CharTokenizer("hello world")
    ids = tok.encode("hold low")
    assert tok.decode(ids) == "hold low"
    assert tok.vocab_size == len(set("hello world"))
    with pytest.raises(ValueError, match="text must use only"):
        tok.encode("hz")
    assert tok.decode(tok.encode("hz", unknown="drop")) == "h"
    assert torch.equal(tok.token_lengths, torch.ones(tok.vocab_size, dtype=torch.long))


@pytest.mark.parametrize("sample", ["aaaaaaa bbbb aaa", "abababab cdcdcd abcd abcd", None])
def test_bpe_equals_the_textbook_algorithm(sample):
    s = sample or text.load_reference_text()[:3000]
    tok = text.BPETokenizer.train(s, vocab_size=len(set(s)) + 40)
    ids = tok.encode(s)
    assert [tok.vocab[i] for i in ids.tolist()] == _reference_bpe(s, tok.vocab_size)
    assert tok.decode(ids) == s


def test_bpe_on_the_corpus_shortens_and_round_trips():
    corpus = text.bpe_corpus(200)
    assert corpus.tokenizer.vocab_size == 200
    chars = text.char_corpus()
    assert len(corpus.train) < 0.7 * len(chars.train)
    validation = text.split_text(text.load_reference_text()).validation
    assert corpus.tokenizer.decode(corpus.validation) == validation
    lengths = corpus.tokenizer.token_lengths
    assert int(lengths[corpus.validation].sum()) == len(validation)
    with pytest.raises(ValueError, match="vocab_size must be"):
        text.BPETokenizer.train("abc", 2)


def test_window_batches_are_next_token_pairs_and_reproducible():
    ids = torch.arange(100)
    batches = text.WindowBatches(ids, context=8, batch_size=4, steps=3, seed=1)
    first = list(batches)
    assert len(batches) == len(first) == 3
    for x, y in first:
        assert x.shape == y.shape == (4, 8)
        assert torch.equal(y, x + 1)  # the target is the next token
    again = list(text.WindowBatches(ids, context=8, batch_size=4, steps=3, seed=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], next(iter(batches))[0])  # a new pass draws anew
    with pytest.raises(ValueError, match="ids must hold at least context"):
        text.WindowBatches(torch.arange(5), 8, 2, 1)


def test_windows_predict_every_token_once():
    ids = torch.arange(50)
    batches = text.windows(ids, context=7, batch_size=3)
    targets = torch.cat([y.flatten() for _, y in batches])
    assert torch.equal(targets, ids[1 : 1 + 7 * 7])
    assert torch.equal(torch.cat([x.flatten() for x, _ in batches]), ids[: 7 * 7])
    assert len(text.windows(ids, 7, limit=15)) == 1


class _Uniform(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.bias = vocab, nn.Parameter(torch.zeros(vocab))

    def forward(self, x):
        return self.bias.expand(*x.shape, self.vocab)


def test_bits_per_character():
    ids = torch.randint(0, 16, (200,))
    batches = text.windows(ids, 10)
    assert text.bits_per_character(_Uniform(16), batches, torch.ones(16, dtype=torch.long)) == (
        pytest.approx(4.0))  # log2(16): a uniform guess over 16 characters
    lengths = torch.full((16,), 2)  # tokens of two characters each: half the bits per char
    assert text.bits_per_character(_Uniform(16), batches, lengths) == pytest.approx(2.0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    want = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).mean()
    assert text.lm_loss(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)


def _ngram_by_hand(train, held_out, n, vocab, k):
    from math import log2

    full, ctx = Counter(), Counter()
    for i in range(n - 1, len(train)):
        full[tuple(train[i - n + 1 : i + 1])] += 1
        ctx[tuple(train[i - n + 1 : i])] += 1
    bits = [-log2((full[tuple(held_out[i - n + 1 : i + 1])] + k)
                  / (ctx[tuple(held_out[i - n + 1 : i])] + k * vocab))
            for i in range(n - 1, len(held_out))]  # fmt: skip
    return sum(bits) / len(bits)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_bits_equals_counting_by_hand(order):
    g = torch.Generator().manual_seed(order)
    train_ids = torch.randint(0, 5, (300,), generator=g)
    held_out = torch.randint(0, 5, (80,), generator=g)
    want = _ngram_by_hand(train_ids.tolist(), held_out.tolist(), order, 5, 0.5)
    assert text.ngram_bits(train_ids, held_out, order, 5, 0.5) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="order must be"):
        text.ngram_bits(train_ids, held_out, 0, 5)


def test_warmup_cosine_is_the_formula():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = text.warmup_cosine(optimizer, warmup_steps=4, total_steps=12)
    rates = []
    for _ in range(14):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    want = [2.0 * 0.5 * (1 + math.cos(math.pi * (t - 4) / 8)) for t in range(4, 14)]
    assert rates[4:] == pytest.approx([max(w, 0.0) if t < 12 else 0.0
                                       for t, w in zip(range(4, 14), want)], abs=1e-12)
    with pytest.raises(ValueError, match="warmup_steps must be"):
        text.warmup_cosine(optimizer, 12, 12)


def test_train_language_model_learns_and_records_the_schedule():
    from course_lib.transformer import GPT

    corpus = text.char_corpus(text.load_reference_text()[:20_000])
    torch.manual_seed(0)
    model = GPT(corpus.tokenizer.vocab_size, 16, 1, 2, 16)
    history = text.train_language_model(model, corpus, 40, batch_size=8, lr=1e-2, seed=0,
                                        evals=4, eval_tokens=None)  # fmt: skip
    assert len(history["lr"]) == len(history["grad_norm"]) == 40
    assert history["lr"][0] == pytest.approx(1e-2 / 4) and max(history["lr"]) == 1e-2
    assert history["val_loss"][-1] < history["val_loss"][0] < math.log(corpus.tokenizer.vocab_size)
    with pytest.raises(ValueError, match="steps must be a multiple of evals"):
        text.train_language_model(model, corpus, 10, evals=4)
    with pytest.raises(ValueError, match="schedule must be one of"):
        text.train_language_model(model, corpus, 8, evals=4, schedule="linear")


def test_encode_corpus_uses_the_given_tokenizer():
    tok = text.CharTokenizer("abc def")
    corpus = text.encode_corpus(tok, "abc xdef " * 20, unknown="drop")
    assert corpus.tokenizer is tok
    assert "x" not in tok.decode(torch.cat([corpus.train, corpus.validation, corpus.test]))
    with pytest.raises(ValueError, match="text must use only"):
        text.encode_corpus(tok, "abc xdef " * 20)
