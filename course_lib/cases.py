"""Small, exactly defined data for the case studies of chapter 5 (5.3–5.6).

Each field the source document lists gets data that ships offline and whose truth is known:

- **games** (5.4): every legal tic-tac-toe position, labelled exactly by minimax
  (:func:`tictactoe_positions`), random games (:func:`random_games`), the board's eight
  symmetries (:func:`board_symmetries`);
- **machine translation** (5.5): Arabic numerals written as Chinese numerals
  (:func:`chinese_numeral`, ``123 → 一百二十三``) and the character vocabulary to train on;
- **bioinformatics** (5.6): random DNA with a planted motif (synthetic, said so;
  :func:`planted_motif_dataset`) and the reverse complement (:func:`reverse_complement`);
- **finance / time series** (5.3): a real macroeconomic series that ships with statsmodels
  (:func:`load_macro_series`), lagged features (:func:`lagged_features`) and a walk-forward
  split (:func:`walk_forward_split`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from course_lib import _checks

# --- games: tic-tac-toe ------------------------------------------------------------------------

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
"""The eight winning lines of the 3×3 board, cells numbered row by row 0..8."""


def winner(board: Sequence[int]) -> int:
    """``1`` if X (``1``) owns a full line, ``2`` if O (``2``) does, else ``0``."""
    for a, b, c in LINES:
        if board[a] and board[a] == board[b] == board[c]:
            return int(board[a])
    return 0


def to_move(board: Sequence[int]) -> int:
    """The player to move: X (``1``) moves first, so X is to move when the counts are equal."""
    xs, os = sum(1 for v in board if v == 1), sum(1 for v in board if v == 2)
    return 1 if xs == os else 2


def is_terminal(board: Sequence[int]) -> bool:
    """A finished game: someone has a line, or the board is full."""
    return bool(winner(board)) or all(board)


@functools.cache
def minimax_value(board: tuple[int, ...]) -> int:
    """The exact value of ``board`` for the player to move under perfect play by both sides:
    ``+1`` win, ``0`` draw, ``-1`` loss (negamax, chapter 5.4):

    ``v(s) = -1`` if the previous move completed a line, ``0`` if the board is full, otherwise
    ``v(s) = max_{a legal} -v(s after a)``.
    """
    if winner(board):
        return -1  # the player who just moved won
    if all(board):
        return 0
    player = to_move(board)
    best = -1
    for cell in range(9):
        if not board[cell]:
            child = board[:cell] + (player,) + board[cell + 1 :]
            best = max(best, -minimax_value(child))
            if best == 1:
                break
    return best


def _reachable() -> list[tuple[int, ...]]:
    """Every position reachable from the empty board by legal play (play stops at a win)."""
    start = (0,) * 9
    seen, frontier = {start}, [start]
    while frontier:
        board = frontier.pop()
        if is_terminal(board):
            continue
        player = to_move(board)
        for cell in range(9):
            if not board[cell]:
                child = board[:cell] + (player,) + board[cell + 1 :]
                if child not in seen:
                    seen.add(child)
                    frontier.append(child)
    return sorted(seen)


class Positions(NamedTuple):
    """Tic-tac-toe positions: ``boards`` ``(N, 9)`` int64 (0 empty, 1 X, 2 O) and their exact
    minimax ``values`` ``(N,)`` for the player to move (``-1``, ``0``, ``+1``)."""

    boards: torch.Tensor
    values: torch.Tensor


@functools.lru_cache(maxsize=1)
def _all_positions() -> tuple[tuple[int, ...], ...]:
    return tuple(_reachable())


def tictactoe_positions() -> Positions:
    """Every legal tic-tac-toe position (5,478 of them, the empty board and finished games
    included) with its exact minimax value for the player to move (chapter 5.4)."""
    boards = _all_positions()
    values = [minimax_value(b) for b in boards]
    return Positions(torch.tensor(boards, dtype=torch.int64), torch.tensor(values))


def random_games(num_games: int, seed: int = 0) -> list[list[tuple[int, ...]]]:
    """``num_games`` games of uniformly random legal moves, each the list of its positions from
    the empty board to the final one (chapter 5.4: the data a collection of game records gives).
    """
    num_games = _checks.positive_int("num_games", num_games)
    seed = _checks.seed("seed", seed)
    rng = np.random.default_rng(seed)
    games = []
    for _ in range(num_games):
        board = (0,) * 9
        game = [board]
        while not is_terminal(board):
            empty = [c for c in range(9) if not board[c]]
            cell = int(rng.choice(empty))
            board = board[:cell] + (to_move(board),) + board[cell + 1 :]
            game.append(board)
        games.append(game)
    return games


def _symmetry_permutations() -> torch.Tensor:
    """The 8 permutations of the cells (the dihedral group of the square): ``(8, 9)``, row
    ``g`` gives for each cell of the transformed board the cell of the original it comes from.
    """
    grid = torch.arange(9).reshape(3, 3)
    perms = []
    for flip in (False, True):
        g = grid.T if flip else grid
        for k in range(4):
            perms.append(torch.rot90(g, k).reshape(9))
    return torch.stack(perms)


SYMMETRIES = _symmetry_permutations()
"""``(8, 9)``: the four rotations of the board and their transposes (chapter 5.4)."""


def board_symmetries(boards: torch.Tensor) -> torch.Tensor:
    """The 8 symmetric images of each board: ``(N, 9)`` → ``(8, N, 9)``. Rotating or mirroring
    a tic-tac-toe board maps lines to lines, so every image has the same minimax value."""
    _checks.tensor("boards", boards, ndim=2)
    if boards.shape[1] != 9:
        raise ValueError(f"boards must have shape (N, 9), got {tuple(boards.shape)}")
    return boards[:, SYMMETRIES].permute(1, 0, 2)


def canonical(boards: torch.Tensor) -> torch.Tensor:
    """One representative per symmetry class: the lexicographically smallest of the 8 images
    of each board, ``(N, 9)`` (two boards are symmetric exactly when these are equal)."""
    images = board_symmetries(boards)  # (8, N, 9)
    weights = 3 ** torch.arange(8, -1, -1)
    codes = (images * weights).sum(-1)  # (8, N): base-3 number of each image
    best = codes.argmin(0)
    return images[best, torch.arange(images.shape[1])]


def encode_boards(boards: torch.Tensor) -> torch.Tensor:
    """Network input for each board, from the side of the player to move: two planes of 9
    cells (``mine``, ``theirs``), float32 ``(N, 18)`` (chapter 5.4). With this encoding the
    value is a function of the input alone, whoever is to move."""
    _checks.tensor("boards", boards, ndim=2)
    if boards.shape[1] != 9:
        raise ValueError(f"boards must have shape (N, 9), got {tuple(boards.shape)}")
    xs, os = (boards == 1).sum(1), (boards == 2).sum(1)
    player = torch.where(xs == os, 1, 2).unsqueeze(1)
    mine = (boards == player).float()
    theirs = ((boards != 0) & (boards != player)).float()
    return torch.cat([mine, theirs], dim=1)


def value_classes(values: torch.Tensor) -> torch.Tensor:
    """Minimax values ``-1, 0, +1`` as class labels ``0, 1, 2`` (loss, draw, win)."""
    return values.long() + 1


def board_codes(boards: torch.Tensor) -> torch.Tensor:
    """Each board as one integer (its base-3 number), ``(N,)``: handy for set operations."""
    return (boards * 3 ** torch.arange(8, -1, -1)).sum(-1)


# --- machine translation: Arabic numerals → Chinese numerals ----------------------------------

CHINESE_DIGITS = "零一二三四五六七八九"
_UNITS = ("千", "百", "十", "")


def _chinese_group(n: int) -> str:
    """``1 <= n <= 9999`` in Chinese, zeros between digits written once as 零, none at the end."""
    out, pending_zero, started = [], False, False
    for digit, unit in zip(f"{n:04d}", _UNITS):
        d = int(digit)
        if d == 0:
            pending_zero = pending_zero or started
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(CHINESE_DIGITS[d] + unit)
        started = True
    return "".join(out)


def chinese_numeral(n: int) -> str:
    """``n`` (``0 <= n < 10**8``) written in Chinese numerals, as in mainland usage (5.5):

    - digits with their units 千 百 十 inside a group of four, the group of ten-thousands
      followed by 万: ``123 → 一百二十三``, ``45678 → 四万五千六百七十八``;
    - a run of zeros *between* non-zero digits is read once as 零, trailing zeros are silent:
      ``1001 → 一千零一``, ``1010 → 一千零一十``, ``1100 → 一千一百``; so is a gap after 万:
      ``10001 → 一万零一``, ``20500 → 二万零五百``;
    - a leading 一十 is said 十: ``10 → 十``, ``15 → 十五``, ``150000 → 十五万``
      (but ``110 → 一百一十``).
    """
    n = _checks.integer("n", n, 0, 10**8 - 1)
    if n == 0:
        return "零"
    high, low = divmod(n, 10_000)
    text = ""
    if high:
        text += _chinese_group(high) + "万"
    if low:
        if high and low < 1000:
            text += "零"
        text += _chinese_group(low)
    if text.startswith("一十"):
        text = text[1:]
    return text


class NumeralTask(NamedTuple):
    """Token ids for numeral translation: ``prompts`` ``(N, P)`` (the Arabic digits, left-padded,
    then ``=``), ``targets`` ``(N, T)`` (the Chinese characters, then end-of-sequence, then
    padding), the ``numbers`` themselves and the ``vocab`` (``vocab[id]`` is the character)."""

    prompts: torch.Tensor
    targets: torch.Tensor
    numbers: torch.Tensor
    vocab: tuple[str, ...]


PAD, EOS = "␀", "␃"
NUMERAL_VOCAB: tuple[str, ...] = (PAD, EOS, "=", *"0123456789", *CHINESE_DIGITS, "十", "百",
                                  "千", "万")  # fmt: skip


def numeral_task(numbers: Sequence[int], digits: int = 5) -> NumeralTask:
    """Prompts and targets for translating each of ``numbers`` (each ``< 10**digits``) into
    Chinese numerals (chapter 5.5). The prompt of ``123`` with ``digits=5`` is
    ``␀ ␀ 1 2 3 =``; its target ``一 百 二 十 三 ␃ ␀ …`` (length ``2·digits``: the longest
    numeral below ``10**digits`` has ``2·digits − 1`` characters)."""
    digits = _checks.integer("digits", digits, 1, 8)
    numbers = [_checks.integer("numbers", int(v), 0, 10**digits - 1) for v in numbers]
    if not numbers:
        raise ValueError("numbers must hold at least one number, got none")
    index = {ch: i for i, ch in enumerate(NUMERAL_VOCAB)}
    prompts, targets = [], []
    for n in numbers:
        text = str(n)
        padding = [index[PAD]] * (digits - len(text))
        prompts.append(padding + [index[c] for c in text] + [index["="]])
        out = [index[c] for c in chinese_numeral(n)] + [index[EOS]]
        targets.append(out + [index[PAD]] * (2 * digits - len(out)))
    return NumeralTask(torch.tensor(prompts), torch.tensor(targets), torch.tensor(numbers),
                       NUMERAL_VOCAB)  # fmt: skip


def decode_numeral(ids: Sequence[int], vocab: Sequence[str] = NUMERAL_VOCAB) -> str:
    """Characters of ``ids`` up to the first end-of-sequence token (padding dropped)."""
    out = []
    for i in ids:
        ch = vocab[int(i)]
        if ch == EOS:
            break
        if ch != PAD:
            out.append(ch)
    return "".join(out)


# --- bioinformatics: a planted DNA motif -------------------------------------------------------

BASES = "ACGT"
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


def reverse_complement_text(sequence: str) -> str:
    """The other strand of ``sequence`` read 5′→3′: complement each base, reverse the order
    (``"GATTACA" → "TGTAATC"``)."""
    _checks.instance("sequence", sequence, str)
    if set(sequence) - set(BASES):
        raise ValueError(f"sequence must hold only the bases A, C, G, T, got {sequence!r}")
    return "".join(_COMPLEMENT[b] for b in reversed(sequence))


def one_hot_dna(sequences: Sequence[str]) -> torch.Tensor:
    """DNA strings of one length ``L`` as one-hot tensors ``(N, 4, L)`` (rows A, C, G, T)."""
    if isinstance(sequences, str) or not sequences:
        raise ValueError("sequences must be a non-empty list of DNA strings")
    length = len(sequences[0])
    index = {b: i for i, b in enumerate(BASES)}
    codes = []
    for s in sequences:
        if len(s) != length or set(s) - set(BASES):
            raise ValueError(f"sequences must be strings of A, C, G, T of one length {length}, "
                             f"got {s!r}")  # fmt: skip
        codes.append([index[b] for b in s])
    return torch.nn.functional.one_hot(torch.tensor(codes), 4).permute(0, 2, 1).float()


def reverse_complement(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of one-hot DNA ``(N, 4, L)`` (rows A, C, G, T): with this row order
    the complement is the row order reversed (A↔T, C↔G), and the strand is read backwards, so
    it is ``x.flip(1).flip(2)`` (chapter 5.6)."""
    _checks.tensor("x", x, ndim=3)
    if x.shape[1] != 4:
        raise ValueError(f"x must be one-hot DNA of shape (N, 4, L), got {tuple(x.shape)}")
    return x.flip(1).flip(2)


def _contains(sequence: str, motif: str) -> bool:
    return motif in sequence or reverse_complement_text(motif) in sequence


def planted_motif_dataset(
    num_sequences: int, length: int = 40, motif: str = "GATTACA", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A **synthetic** DNA classification task (chapter 5.6): half of the sequences carry
    ``motif`` on one of the two strands (the motif or its reverse complement, at a random
    position), the other half carry it on neither. Bases are uniform and independent.

    Returns one-hot ``X`` ``(N, 4, length)``, labels ``y`` (1: motif present) and the strings.
    The label is a property of the double-stranded molecule, so the reverse complement of a
    sequence has the same label: :func:`reverse_complement` is a label-preserving augmentation.
    """
    num_sequences = _checks.positive_int("num_sequences", num_sequences)
    length = _checks.positive_int("length", length)
    _checks.instance("motif", motif, str)
    if not motif or set(motif) - set(BASES) or len(motif) > length:
        raise ValueError(f"motif must be a non-empty string of A, C, G, T no longer than "
                         f"length = {length}, got {motif!r}")  # fmt: skip
    seed = _checks.seed("seed", seed)
    rng = np.random.default_rng(seed)
    site_codes = [np.array([BASES.index(b) for b in site])
                  for site in (motif, reverse_complement_text(motif))]  # fmt: skip
    labels = np.arange(num_sequences) % 2  # alternate negatives and positives
    codes = rng.integers(0, 4, size=(num_sequences, length))
    sequences: list[str] = [""] * num_sequences
    todo = np.arange(num_sequences)
    while len(todo):  # redraw until each sequence has its label (rarely needed)
        for i in todo:
            if labels[i]:
                site = site_codes[int(rng.integers(0, 2))]
                start = int(rng.integers(0, length - len(motif) + 1))
                codes[i, start : start + len(site)] = site
            sequences[i] = "".join(BASES[c] for c in codes[i])
        wrong = [i for i in todo if _contains(sequences[i], motif) != bool(labels[i])]
        todo = np.array(wrong, dtype=np.int64)
        codes[todo] = rng.integers(0, 4, size=(len(todo), length))
    order = rng.permutation(num_sequences)
    sequences = [sequences[i] for i in order]
    y = torch.tensor(labels[order])
    return one_hot_dna(sequences), y, sequences


class _StackedAdam:
    """``torch.optim.Adam``'s update (no weight decay) on parameters stacked over K models
    ``(K, ...)``, with one learning rate per model:
    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``,
    ``θ ← θ − η_k (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)``."""

    def __init__(self, params: list[torch.Tensor], lrs: Sequence[float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:  # fmt: skip
        self.params, self.betas, self.eps, self.t = params, betas, eps, 0
        self.lrs = [torch.tensor(lrs, dtype=p.dtype).view(-1, *[1] * (p.ndim - 1)) for p in params]
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        beta1, beta2 = self.betas
        self.t += 1
        for p, g, lr, (m, v) in zip(self.params, grads, self.lrs, self.moments):
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v / (1 - beta2**self.t)).sqrt_().add_(self.eps)
            p.sub_(lr * (m / (1 - beta1**self.t)) / denom)


class MotifRun(NamedTuple):
    """K motif detectors trained at once by :func:`train_motif_cnns`: per-model validation and
    test accuracy ``(K,)`` and the stacked weights (``state[name][k]`` is model k's tensor, with
    the names of :func:`motif_cnn`)."""

    val_accuracy: torch.Tensor
    test_accuracy: torch.Tensor
    state: dict[str, torch.Tensor]


def motif_cnn(filters: int = 16, width: int = 7) -> torch.nn.Sequential:
    """The motif detector of chapter 5.6 (as in DeepBind): ``filters`` convolution filters of
    ``width`` bases scan the sequence, ReLU, the maximum over positions, a linear read-out
    to two classes. Input one-hot DNA ``(N, 4, L)``."""
    filters = _checks.positive_int("filters", filters)
    width = _checks.positive_int("width", width)
    nn = torch.nn
    return nn.Sequential(nn.Conv1d(4, filters, width), nn.ReLU(), nn.AdaptiveMaxPool1d(1),
                         nn.Flatten(), nn.Linear(filters, 2))  # fmt: skip


def _per_seed(seeds, splits, lrs) -> tuple[list[int], list[float]]:
    """The checks shared by the stacked trainers: non-negative integer seeds, and one split and
    one positive learning rate per seed."""
    seeds = _checks.ints("seeds", seeds, 0)
    if len(splits) != len(seeds) or len(lrs) != len(seeds):
        raise ValueError(f"splits and lrs must have one entry per seed ({len(seeds)}), "
                         f"got {len(splits)} and {len(lrs)}")  # fmt: skip
    return seeds, [_checks.positive(f"lrs[{i}]", lr) for i, lr in enumerate(lrs)]


def _stacked_logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits ``(K, B, 2)`` of K stacked :func:`motif_cnn` models on inputs ``(K, B, 4, L)``:
    the convolution is one batched product over the unfolded windows of every model."""
    weight, bias = params["0.weight"], params["0.bias"]  # (K, C, 4, w), (K, C)
    k, channels, _, width = weight.shape
    windows = x.unfold(3, width, 1).permute(0, 1, 3, 2, 4)  # (K, B, P, 4, w)
    batch, positions = windows.shape[1], windows.shape[2]
    h = torch.bmm(windows.reshape(k, batch * positions, -1), weight.reshape(k, channels, -1).mT)
    h = torch.relu(h + bias.unsqueeze(1)).view(k, batch, positions, channels).amax(2)
    return torch.baddbmm(params["4.bias"].unsqueeze(1), h, params["4.weight"].mT)


def train_motif_cnns(
    splits: Sequence,
    seeds: Sequence[int],
    lrs: Sequence[float],
    epochs: int,
    batch_size: int = 32,
    filters: int = 16,
    width: int = 7,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> MotifRun:
    """Train K = ``len(seeds)`` :func:`motif_cnn` models at once with Adam (chapter 5.6).

    Model k is built right after ``torch.manual_seed(seeds[k])``, trains on ``splits[k].train``
    (one :class:`~course_lib.data.Splits` per model, training sets of one size) in mini-batches
    of ``batch_size``, in the order ``torch.randperm(n, generator=Generator().manual_seed(
    seeds[k] + 1000 · epoch))`` each epoch, with learning rate ``lrs[k]`` and
    ``torch.optim.Adam``'s update written out:
    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``, ``θ ← θ − η (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)``.
    The loss is ``Σ_k L_k``, so each model gets its own gradient; the K models' convolutions
    run as one batched matrix product. ``tests/test_cases.py`` checks the result against K
    ordinary ``nn.Sequential`` models trained one after another by ``torch.optim.Adam``.
    """
    seeds, lrs = _per_seed(seeds, splits, lrs)
    k = len(seeds)
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    sizes = {len(s.train.y) for s in splits}
    if len(sizes) != 1:
        raise ValueError(f"splits must have training sets of one size, got sizes {sorted(sizes)}")
    n = sizes.pop()
    if len({(len(s.val.y), len(s.test.y)) for s in splits}) != 1:
        raise ValueError("splits must have validation and test sets of one size each")
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(motif_cnn(filters, width))
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models])
              .clone().requires_grad_() for name, _ in models[0].named_parameters()}  # fmt: skip
    adam = _StackedAdam(list(params.values()), lrs, betas, eps)
    X = torch.stack([s.train.X for s in splits])  # (K, n, 4, L)
    y = torch.stack([s.train.y for s in splits])  # (K, n)
    rows = torch.arange(k).unsqueeze(1)
    for epoch in range(epochs):
        orders = torch.stack([
            torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1000 * epoch))
            for seed in seeds
        ])  # fmt: skip
        for start in range(0, n, batch_size):
            index = orders[:, start : start + batch_size]
            logits = _stacked_logits(params, X[rows, index])
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), y[rows, index].flatten(), reduction="none"
            ).view(k, -1).mean(1).sum()
            adam.step(torch.autograd.grad(loss, adam.params))
    state = {name: p.detach() for name, p in params.items()}

    @torch.no_grad()
    def accuracy(part: str) -> torch.Tensor:
        Xs = torch.stack([getattr(s, part).X for s in splits])
        ys = torch.stack([getattr(s, part).y for s in splits])
        return (_stacked_logits(state, Xs).argmax(-1) == ys).double().mean(1)

    return MotifRun(accuracy("val"), accuracy("test"), state)


# --- finance / time series: a real macroeconomic series ----------------------------------------


def load_macro_series():
    """The US quarterly macroeconomic series that ships with statsmodels
    (``statsmodels.datasets.macrodata``: 203 quarters, 1959Q1–2009Q3 — real GDP, consumption,
    inflation, the 3-month Treasury-bill rate, unemployment, …) as a ``pandas.DataFrame``
    indexed by quarter, with ``gdp_growth`` added: the annualized quarterly growth of real GDP
    in percent, ``400 · Δ log(realgdp)`` (chapter 5.3). Loaded from the installed package:
    no network."""
    import pandas as pd
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data.copy()
    frame.index = pd.PeriodIndex.from_fields(
        year=frame["year"].astype(int), quarter=frame["quarter"].astype(int), freq="Q"
    )
    frame["gdp_growth"] = 400 * np.log(frame["realgdp"]).diff()
    return frame


def lagged_features(frame, columns: Sequence[str], target: str, lags: int = 4, horizon: int = 1):
    """Features and target for forecasting ``target`` ``horizon`` steps ahead (chapter 5.3):
    row ``t`` holds ``column[t − l + 1]`` for ``l = 1..lags`` of every column (only values known
    at time ``t``) and the target ``target[t + horizon]``. Rows with a missing value are dropped.
    Returns ``(X, y)`` as ``pandas`` objects sharing the index (the time ``t`` of each row)."""
    import pandas as pd

    lags = _checks.positive_int("lags", lags)
    horizon = _checks.positive_int("horizon", horizon)
    missing = [c for c in [*columns, target] if c not in frame.columns]
    if missing:
        raise ValueError(f"columns and target must be columns of frame, got unknown {missing}")
    X = pd.DataFrame({f"{c}[t-{lag}]" if lag else f"{c}[t]": frame[c].shift(lag)
                      for c in columns for lag in range(lags)})  # fmt: skip
    y = frame[target].shift(-horizon).rename(f"{target}[t+{horizon}]")
    keep = X.notna().all(axis=1) & y.notna()
    return X[keep], y[keep]


def walk_forward_split(n: int, val_fraction: float = 0.2, test_fraction: float = 0.2):
    """Index ranges ``(train, val, test)`` for ``n`` time-ordered rows: the oldest rows train,
    the next ones validate, the most recent ones test — every model is scored only on data
    that comes *after* everything it was fitted or tuned on (chapter 5.3)."""
    n = _checks.integer("n", n, 3)
    val_fraction = _checks.fraction("val_fraction", val_fraction)
    test_fraction = _checks.fraction("test_fraction", test_fraction)
    a = int(round(n * (1 - val_fraction - test_fraction)))
    b = int(round(n * (1 - test_fraction)))
    if not 0 < a < b < n:
        raise ValueError(f"val_fraction + test_fraction must leave rows for every part, got "
                         f"{val_fraction} + {test_fraction} for n = {n}")  # fmt: skip
    return torch.arange(a), torch.arange(a, b), torch.arange(b, n)


class ForecastRun(NamedTuple):
    """K regressors trained at once by :func:`train_regressors`: mean squared error on each
    model's validation and test rows, ``(K,)``."""

    val_mse: torch.Tensor
    test_mse: torch.Tensor


def train_regressors(
    splits: Sequence,
    seeds: Sequence[int],
    lrs: Sequence[float],
    steps: int = 300,
    hidden: int = 32,
    weight_decay: float = 0.0,
) -> ForecastRun:
    """Train K one-hidden-layer MLP regressors ``y ≈ W₂ relu(W₁x + b₁) + b₂`` at once, full
    batch, with Adam (chapter 5.3): model k is ``nn.Sequential(Linear(d, hidden), ReLU(),
    Linear(hidden, 1))`` built right after ``torch.manual_seed(seeds[k])``, fitted to
    ``splits[k].train`` (targets ``(n,)``) for ``steps`` steps with learning rate ``lrs[k]`` on
    the mean squared error plus ``weight_decay · ‖W‖²/2`` over the weight matrices. One batched
    product per layer for all K models; ``tests/test_cases.py`` checks the result against
    ``torch.optim.Adam`` on each model alone. Training sets must have one shape; validation
    and test sets one shape each."""
    seeds, lrs = _per_seed(seeds, splits, lrs)
    steps = _checks.positive_int("steps", steps)
    hidden = _checks.positive_int("hidden", hidden)
    weight_decay = _checks.real("weight_decay", weight_decay, 0)
    for part in ("train", "val", "test"):
        if len({tuple(getattr(s, part).X.shape) for s in splits}) != 1:
            raise ValueError(f"splits must have {part} sets of one shape")
    nn = torch.nn
    features = splits[0].train.X.shape[1]
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                        nn.Linear(hidden, 1)))  # fmt: skip
    names = [name for name, _ in models[0].named_parameters()]
    params = [torch.stack([dict(m.named_parameters())[name].detach() for m in models])
              .clone().requires_grad_() for name in names]  # fmt: skip
    w1, b1, w2, b2 = params

    def predict(X: torch.Tensor) -> torch.Tensor:  # (K, n, d) -> (K, n)
        h = torch.relu(torch.baddbmm(b1.unsqueeze(1), X, w1.mT))
        return torch.baddbmm(b2.unsqueeze(1), h, w2.mT).squeeze(-1)

    adam = _StackedAdam(params, lrs)
    X = torch.stack([s.train.X for s in splits]).float()
    y = torch.stack([s.train.y for s in splits]).float()
    for _ in range(steps):
        loss = ((predict(X) - y) ** 2).mean(1).sum()
        if weight_decay:
            loss = loss + weight_decay / 2 * ((w1**2).sum() + (w2**2).sum())
        adam.step(torch.autograd.grad(loss, params))

    @torch.no_grad()
    def mse(part: str) -> torch.Tensor:
        Xs = torch.stack([getattr(s, part).X for s in splits]).float()
        ys = torch.stack([getattr(s, part).y for s in splits]).float()
        return ((predict(Xs) - ys) ** 2).double().mean(1)

    return ForecastRun(mse("val"), mse("test"))
