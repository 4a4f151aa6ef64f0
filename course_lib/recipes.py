"""Small building blocks for end-to-end recipes (chapters 4, 5 and 7).

The techniques themselves live in their own modules (``optim``, ``prune``, ``distill``,
``data``, ``augment``, ``compress``). This module holds the glue the later chapters need to
*combine* them and to measure what each step bought:

- :func:`load_sklearn_table` — the tabular datasets that ship with scikit-learn (diabetes,
  breast cancer, wine), split like the digits (chapters 4.1 and 5).
- :class:`AugmentedLoader` — apply a batch augmentation on the fly to any loader of
  ``(inputs, targets)`` batches, so :func:`course_lib.train.fit` trains on augmented data
  (chapter 4.3).
- :func:`random_time_shift` — label-preserving augmentation for 1-D signals (chapter 5).
- :func:`profile_model` — one row of a "what did this step buy" table: accuracy, parameters,
  non-zero parameters, serialized size and measured latency (chapters 4 and 7).
- :func:`fit_early_stopping` — train with a validation set and keep the weights of the best
  epoch, instead of training a fixed number of epochs blind (chapter 4.1).
- :func:`over_seeds` — repeat an experiment over seeds and report mean ± standard deviation
  (chapters 5 and 7).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import nn

from course_lib import _checks
from course_lib.compress import count_nonzero, count_parameters, measure_latency, model_size_bytes
from course_lib.data import Splits, train_val_test_split
from course_lib.parallel import num_threads
from course_lib.train import History, evaluate, fit

SKLEARN_TABLES = {
    "diabetes": "load_diabetes",
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
}
"""Tabular datasets bundled with scikit-learn (no download): name → loader function."""


def load_sklearn_table(
    name: str, val_size: float = 0.2, test_size: float = 0.2, seed: int = 0
) -> Splits:
    """A tabular dataset that ships with scikit-learn, split into train / validation / test
    (chapters 4.1 and 5).

    - ``"diabetes"``: 442 patients, 10 features, a real-valued target (disease progression one
      year later): *regression*, ``y`` float32 of shape ``(n, 1)`` to match a one-output model
      such as the document's ``Net`` (a ``(n,)`` target would broadcast wrongly in ``MSELoss``).
    - ``"breast_cancer"``: 569 tumours, 30 features, 2 classes; ``"wine"``: 178 wines,
      13 features, 3 classes: *classification*, ``y`` int64, stratified split.

    Features are returned raw (float32, unscaled): scaling them is a step the chapters teach
    (``course_lib.scaling.Standardize``, fitted on the training part only).
    """
    import sklearn.datasets

    if name not in SKLEARN_TABLES:
        raise ValueError(f"name must be one of {sorted(SKLEARN_TABLES)}, got {name!r}")
    bunch = getattr(sklearn.datasets, SKLEARN_TABLES[name])()
    X = torch.tensor(bunch.data, dtype=torch.float32)
    if name == "diabetes":
        y = torch.tensor(bunch.target, dtype=torch.float32).reshape(-1, 1)
        return train_val_test_split(X, y, val_size, test_size, seed=seed, stratify=False)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return train_val_test_split(X, y, val_size, test_size, seed=seed, stratify=True)


class AugmentedLoader:
    """Wrap a loader of ``(inputs, targets)`` batches so that every *training* batch is
    augmented on the fly: it yields ``(transform(inputs), targets)`` (chapter 4.3).

    Each pass draws new random transformations, so every epoch sees different versions of the
    same examples; the targets are unchanged, which is why the transform must *preserve the
    label*. Use it for the training loader only: validation and test data stay untouched.
    ``len`` is the wrapped loader's number of batches.
    """

    def __init__(
        self, loader: Iterable, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        _checks.batches("loader", loader)
        _checks.function("transform", transform)
        self.loader, self.transform = loader, transform

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, targets in self.loader:
            yield self.transform(inputs), targets

    def __len__(self) -> int:
        return len(self.loader)


def random_time_shift(
    signals: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift every signal of a batch in time by its own random ``k ~ U{-max_shift..max_shift}``
    steps, circularly: ``out[i, ..., t] = x[i, ..., (t - k_i) mod L]`` (chapter 5).

    ``signals`` is ``(N, L)`` or ``(N, C, L)``. For signals whose class does not depend on
    *where* the pattern sits (a spoken word, a heartbeat, an MNIST-1D digit) this is the 1-D
    analogue of shifting an image, and it preserves the label. Same ``generator`` seed, same
    output.
    """
    _checks.tensor("signals", signals)
    if signals.ndim not in (2, 3):
        raise ValueError(f"signals must have shape (N, L) or (N, C, L), got {tuple(signals.shape)}")
    length = signals.shape[-1]
    _checks.integer("max_shift", max_shift, 0, length - 1)
    n = signals.shape[0]
    shifts = torch.randint(-max_shift, max_shift + 1, (n,), generator=generator)
    t = torch.arange(length)
    source = (t[None, :] - shifts[:, None]) % length  # (N, L): where each output step reads
    source = source.to(signals.device)
    if signals.ndim == 3:
        source = source[:, None, :].expand(-1, signals.shape[1], -1)
    return torch.gather(signals, -1, source)


def profile_model(
    model: nn.Module,
    example_input: torch.Tensor,
    eval_loader: Iterable | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    repeats: int = 30,
    threads: int = 1,
) -> dict[str, float]:
    """Measure one model for a comparison table (chapters 4 and 7).

    Returns ``{"accuracy", "parameters", "nonzero", "size_kb", "latency_ms"}``: accuracy on
    ``eval_loader`` (``nan`` without one; ``loss_fn`` defaults to cross-entropy), the number of
    parameters and of non-zero parameters (``course_lib.compress.count_nonzero``: pruned weights
    count as gone), ``torch.save`` size of the state dict in KiB, and the median latency of
    ``model(example_input)`` in milliseconds (``course_lib.compress.measure_latency``) with
    ``threads`` intra-op CPU threads, so that models are compared, not thread schedules.
    """
    _checks.module("model", model)
    _checks.tensor("example_input", example_input)
    threads = _checks.positive_int("threads", threads)
    _checks.batches("eval_loader", eval_loader, allow_none=True)
    _checks.callable_or_none("loss_fn", loss_fn, "loss_fn(outputs, targets)")
    accuracy = float("nan")
    if eval_loader is not None:
        loss_fn = nn.functional.cross_entropy if loss_fn is None else loss_fn
        device = example_input.device
        accuracy = evaluate(model, eval_loader, loss_fn, device)["accuracy"]
    with num_threads(threads):
        latency = measure_latency(model, example_input, warmup=5, repeats=repeats)
    return {
        "accuracy": accuracy,
        "parameters": count_parameters(model),
        "nonzero": count_nonzero(model),
        "size_kb": model_size_bytes(model) / 1024,
        "latency_ms": latency.median * 1e3,
    }


def fit_early_stopping(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    max_epochs: int,
    patience: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[History, int]:
    """Train with :func:`course_lib.train.fit` and at the end load the weights of the epoch
    with the lowest validation loss (*early stopping*, 早停; chapter 4.1).

    ``best = argmin_e val_loss(e)``. With ``patience`` the run also stops once the validation
    loss has not improved for ``patience`` epochs in a row. Returns the history (up to the last
    epoch run) and the 1-based best epoch; ``model`` holds that epoch's weights.
    """
    max_epochs = _checks.positive_int("max_epochs", max_epochs)
    history = fit(model, train_loader, val_loader, optimizer, loss_fn, max_epochs, device,
                  patience=patience, restore_best=True)  # fmt: skip
    return history, history["best_epoch"][0]


class SeedStats(NamedTuple):
    """Results of one experiment repeated over seeds: the values, their mean and their sample
    standard deviation ``s = sqrt(Σ (x_i - mean)² / (n - 1))`` (0 for a single seed)."""

    values: list[float]
    mean: float
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


def over_seeds(experiment: Callable[[int], float], seeds: Sequence[int]) -> SeedStats:
    """Run ``experiment(seed)`` for every seed and summarise the results (chapters 5 and 7).

    A gain measured on one seed may be noise: report ``mean ± std`` over several seeds, and
    call a difference real only when it is large against the spread.
    """
    _checks.function("experiment", experiment, "experiment(seed) -> float")
    seeds = list(_checks.ints("seeds", seeds, 0))
    values = [float(experiment(seed)) for seed in seeds]
    if any(math.isnan(v) for v in values):
        raise ValueError("experiment returned NaN for at least one seed")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return SeedStats(values, statistics.fmean(values), std)
