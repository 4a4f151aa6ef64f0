"""Timing code so that comparisons survive a noisy machine (chapters 1, 3.3, 3.4; benchmarks).

One helper, :func:`interleaved`, built on ``torch.utils.benchmark.Timer``: it sets the number
of intra-op threads for each arm, waits for an accelerator's queued kernels before reading the
clock (kernels run asynchronously: a clock read without a synchronisation times the *launch*,
not the work), and runs two untimed calls before every timed sample (``Timer.timeit``'s own
warm-up), so that a sample never pays for the cache the previous arm evicted. Arms are timed in
alternation, A, B, A, B, …, so that background load, clock boosts and thermal drift touch every
arm alike; medians and quartiles then resist the outliers a shared machine produces.

:func:`measure` is the one-arm case; ``compress.measure_latency``, ``sparse.matmul_seconds``
and ``parallel.thread_scaling`` delegate to these two. Timings never decide a unit test: the
chapters assert timing claims on interleaved medians with generous margins.
"""

from __future__ import annotations

import logging
import statistics
import timeit
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from course_lib import _checks

# Importing torch.utils.benchmark imports torch.utils.cpp_extension, which logs a warning on
# stderr when it finds a CUDA_HOME (an nvcc on PATH) but no CUDA device; stderr in a cell fails
# the book build, so that one import runs with the logger quiet.
_cpp_logger = logging.getLogger("torch.utils.cpp_extension")
_cpp_level = _cpp_logger.level
_cpp_logger.setLevel(logging.ERROR)
try:
    from torch.utils.benchmark import Timer
finally:
    _cpp_logger.setLevel(_cpp_level)

__all__ = ["Comparison", "Timing", "inference", "interleaved", "measure", "stamp", "stamp_ratio"]


class Timing(NamedTuple):
    """Seconds per call of one arm: the median and the quartiles of ``repeats`` samples."""

    median: float
    q1: float
    q3: float
    repeats: int

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1``: the spread of the middle half of the samples."""
        return self.q3 - self.q1


def _summary(times: list[float]) -> Timing:
    q1, q3 = (times[0], times[0]) if len(times) < 2 else (
        statistics.quantiles(times, n=4, method="inclusive")[::2])  # fmt: skip
    return Timing(statistics.median(times), q1, q3, len(times))


@dataclass(frozen=True)
class Comparison:
    """What :func:`interleaved` measured: ``times[name]`` holds the seconds per call of that
    arm in every round (round ``r`` of all arms ran back to back: the samples are paired)."""

    times: dict[Hashable, list[float]]

    @property
    def timings(self) -> dict[Hashable, Timing]:
        """Median and quartiles of each arm."""
        return {name: _summary(t) for name, t in self.times.items()}

    @property
    def medians(self) -> dict[Hashable, float]:
        """Median seconds per call of each arm."""
        return {name: statistics.median(t) for name, t in self.times.items()}

    def ratio(self, numerator: Hashable, denominator: Hashable) -> float:
        """How many times longer ``numerator`` takes than ``denominator``: the median over
        rounds of ``times[numerator][r] / times[denominator][r]`` (paired by round, so a slow
        moment of the machine slows both sides of a ratio). ``> 1``: ``denominator`` is faster.
        """
        _checks.one_of("numerator", numerator, self.times)
        _checks.one_of("denominator", denominator, self.times)
        pairs = zip(self.times[numerator], self.times[denominator], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def __str__(self) -> str:
        width = max(len(str(name)) for name in self.times)
        lines = [f"{'arm':<{width}}  median (ms)  quartiles (ms)"]
        for name, t in self.timings.items():
            lines.append(f"{name!s:<{width}}  {t.median * 1e3:11.4f}  "
                         f"{t.q1 * 1e3:.4f}–{t.q3 * 1e3:.4f}")  # fmt: skip
        return "\n".join(lines)


def _clock(device) -> Callable[[], float] | None:
    """A clock for ``Timer``: for a CUDA device, one that synchronises that device first;
    otherwise ``None`` (``Timer``'s default, which synchronises the current accelerator —
    CUDA, MPS, … — when one is available)."""
    if device is None:
        return None
    device = torch.device(device)
    if device.type != "cuda":
        return None

    def clock() -> float:
        torch.cuda.synchronize(device)
        return timeit.default_timer()

    return clock


def interleaved(
    fns: Mapping[Hashable, Callable[[], object]],
    *,
    rounds: int = 20,
    warmup: int = 3,
    number: int = 1,
    num_threads: int | Mapping[Hashable, int] | None = None,
    device: str | torch.device | None = None,
) -> Comparison:
    """Time several arms ``{name: fn}`` in alternation and return a :class:`Comparison`.

    Each arm first runs ``warmup`` untimed calls (caches, allocator, lazy initialisation).
    Then, ``rounds`` times, every arm takes one sample: ``number`` calls of ``fn()`` timed
    together by ``torch.utils.benchmark.Timer.timeit`` (after its two untimed calls), divided
    by ``number``. The arm that starts a round rotates (A B, B A, A B, …), so no arm always
    follows the same one. ``num_threads`` (all arms, or ``{name: n}`` per arm; default: the
    current ``torch.get_num_threads()``) is set while an arm runs; ``device`` names the CUDA
    device to synchronise when the work runs on one that is not the current device.

    Compare arms with :meth:`Comparison.ratio` (median of the per-round ratios) or
    :attr:`Comparison.medians` (chapters 3.3, 3.4; ``benchmarks/``).
    """
    _checks.instance("fns", fns, Mapping, "a mapping name -> callable")
    if not fns:
        raise ValueError("fns must hold at least one callable (name -> fn), got none")
    for name, fn in fns.items():
        _checks.function(f"fns[{name!r}]", fn, "fn() -> anything")
    rounds = _checks.positive_int("rounds", rounds)
    warmup = _checks.integer("warmup", warmup, 0)
    number = _checks.positive_int("number", number)
    if num_threads is None or not isinstance(num_threads, Mapping):
        threads = _checks.positive_int("num_threads", num_threads, allow_none=True)
        threads = {name: threads or torch.get_num_threads() for name in fns}
    else:
        threads = {name: _checks.positive_int(f"num_threads[{name!r}]", num_threads.get(name))
                   for name in fns}  # fmt: skip
    if device is not None:
        device = _checks.instance("device", device, (str, torch.device), "a str or torch.device")
    clock = _clock(device)
    timers = {
        name: Timer("fn()", globals={"fn": fn}, num_threads=threads[name],
                    **({} if clock is None else {"timer": clock}))  # fmt: skip
        for name, fn in fns.items()
    }
    if warmup:
        for timer in timers.values():
            timer.timeit(warmup)
    names = list(timers)
    times: dict[Hashable, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(timers[name].timeit(number).mean)
    return Comparison(times)


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = 10,
    repeats: int = 50,
    number: int = 1,
    num_threads: int | None = None,
    device: str | torch.device | None = None,
) -> Timing:
    """Seconds per call of ``fn()``: the median and quartiles of ``repeats`` samples of
    ``number`` calls each, after ``warmup`` untimed calls (:func:`interleaved` with one arm)."""
    _checks.function("fn", fn, "fn() -> anything")
    repeats = _checks.positive_int("repeats", repeats)
    return interleaved({"fn": fn}, rounds=repeats, warmup=warmup, number=number,
                       num_threads=num_threads, device=device).timings["fn"]  # fmt: skip


@contextmanager
def inference(*models: nn.Module) -> Iterator[None]:
    """The conditions a forward pass is timed under: ``model.eval()`` for every model (dropout
    off, batch norm on its running statistics) and ``torch.inference_mode`` (no autograd
    bookkeeping); each model's train/eval mode is restored afterwards. Pass every model of an
    :func:`interleaved` comparison."""
    if not models:
        raise TypeError("models must be at least one torch.nn.Module, got none")
    for model in models:
        _checks.module("model", model)
    was_training = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for model, mode in zip(models, was_training, strict=True):
            model.train(mode)


# --- printing times so that nbval compares everything else ------------------------------------

TIMER_MARK = "⏱"
_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def stamp(seconds: float) -> str:
    """A wall-clock time as the notebooks print it: ``"⏱ 12.3 ms"`` — the timer mark, three
    significant digits and a unit that follows the magnitude (ns, µs, ms, s). nbval's sanitizer
    (``tests/nbval_sanitize.cfg``) masks the number and unit after the mark and compares the
    rest of the output, so accuracies and sizes printed beside a time are still checked."""
    seconds = _checks.real("seconds", seconds, 0)
    for scale, unit in _UNITS:
        if seconds >= scale or unit == "ns":
            return f"{TIMER_MARK} {seconds / scale:.3g} {unit}"
    raise AssertionError("unreachable")


def stamp_ratio(ratio: float) -> str:
    """A ratio of two times as the notebooks print it, ``"⏱ 1.83×"``: the number (masked by
    the sanitizer, since it varies from run to run) after the timer mark."""
    ratio = _checks.real("ratio", ratio, 0)
    return f"{TIMER_MARK} {ratio:.3g}×"
