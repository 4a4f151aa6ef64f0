"""Fair comparisons made cheap (chapters 3.1, 3.2 and 3.3).

A claim "method A trains better models than method B" is fair only when every arm gets the
same budget, its own hyper-parameters tuned on the **validation** split, several seeds, and
is scored on the **test** split with an interval that says how large the noise is. This
module makes that the short path:

1. :func:`paired_difference` and :func:`assert_beats` — the mean paired difference of two arms
   over the same seeds and its Student-t confidence interval; a notebook asserts an effect
   with it instead of comparing two single numbers.
2. :class:`Arm`, :func:`compare` and :class:`Comparison` — named arms × seeds, each arm's
   grid value chosen on validation, test scores reported as mean ± std, a table and a
   ``pandas.DataFrame``.
3. :func:`train_mlps` — K small MLPs trained *at once* (stacked parameters, batched matrix
   products), each with its own seed, batch order and learning rate; :func:`mlp_arm` turns it
   into an arm whose whole grid × seeds runs in one vectorized batch. Models that do not
   stack (a CNN with BatchNorm, a Transformer) use :func:`fit_arm`, which runs
   :func:`course_lib.train.fit` once per seed behind the same interface.

A chapter writes::

    result = compare({
        "SGD": mlp_arm(splits, optimizer="sgd", grid={"lr": [0.03, 0.1, 0.3]}),
        "Adam": mlp_arm(splits, optimizer="adam", grid={"lr": [3e-4, 1e-3, 3e-3]}),
    }, seeds=range(5))
    print(result)                      # arm | chosen lr | val | test mean ± std
    result.assert_beats("Adam", "SGD")  # fails unless the paired 95 % interval excludes 0
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler

from course_lib import _checks
from course_lib.data import Split, batch_loader, make_loaders
from course_lib.device import select_device
from course_lib.models import MLP
from course_lib.seed import seed_everything

__all__ = [
    "Arm",
    "ArmResult",
    "Comparison",
    "PairedDifference",
    "Score",
    "StackedRun",
    "assert_beats",
    "compare",
    "fit_arm",
    "mlp_arm",
    "paired_difference",
    "t_critical",
    "train_mlps",
]


# --- 1. paired differences and their Student-t interval -------------------------------------


def _central_t_probability(t: float, dof: int) -> float:
    """``P(|T| <= t)`` for Student's t with an integer number ``dof`` of degrees of freedom,
    from the finite series of Abramowitz & Stegun 26.7.3–26.7.4 with ``θ = atan(t / √ν)``:

    - ν odd:  ``(2/π) [θ + sin θ (cos θ + (2/3) cos³θ + (2·4)/(1·3·5) cos⁵θ + …)]``, the
      last term ``(2·4⋯(ν−3))/(1·3⋯(ν−2)) cos^(ν−2) θ`` (no sum for ν = 1);
    - ν even: ``sin θ [1 + (1/2) cos²θ + (1·3)/(2·4) cos⁴θ + …]``, the last term
      ``(1·3⋯(ν−3))/(2·4⋯(ν−2)) cos^(ν−2) θ``.
    """
    theta = math.atan(t / math.sqrt(dof))
    sin, cos = math.sin(theta), math.cos(theta)
    if dof % 2:  # odd
        series, term = 0.0, cos
        for j in range(1, (dof - 1) // 2 + 1):
            series += term
            term *= cos * cos * (2 * j) / (2 * j + 1)
        return 2.0 / math.pi * (theta + sin * series)
    series, term = 0.0, 1.0
    for j in range(1, dof // 2 + 1):
        series += term
        term *= cos * cos * (2 * j - 1) / (2 * j)
    return sin * series


def t_critical(confidence: float, dof: int) -> float:
    """The two-sided Student-t critical value ``t*`` with ``P(|T| <= t*) = confidence`` for
    ``dof`` degrees of freedom (``t* = 2.776`` for 95 % and 4 degrees of freedom, i.e. five
    seeds), found by bisection on the exact central probability. Equals
    ``scipy.stats.t.ppf((1 + confidence) / 2, dof)``."""
    confidence = _checks.fraction("confidence", confidence)
    dof = _checks.positive_int("dof", dof)
    low, high = 0.0, 1.0
    while _central_t_probability(high, dof) < confidence:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):  # interval at floating-point resolution
            break
        if _central_t_probability(middle, dof) < confidence:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


class PairedDifference(NamedTuple):
    """Mean of the paired differences ``d_i = a_i − b_i`` and its confidence interval
    ``[low, high] = mean ∓ t* · std / √n`` (``std`` with ``n − 1`` in the denominator)."""

    mean: float
    low: float
    high: float
    std: float
    n: int
    confidence: float

    def __str__(self) -> str:
        return (f"{self.mean:+.4f} ({self.confidence:.0%} CI [{self.low:+.4f}, {self.high:+.4f}], "
                f"n={self.n} paired seeds)")  # fmt: skip


def _scores(name: str, values: Any) -> np.ndarray:
    """``values`` (list, tuple, NumPy array, tensor, Series) as a 1-D float64 array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {values!r}") from err
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite numbers only, got {array.tolist()}")
    return array


def paired_difference(a: Any, b: Any, confidence: float = 0.95) -> PairedDifference:
    """Paired comparison of two arms scored on the same seeds (chapters 3.1–3.3).

    With ``d_i = a_i − b_i`` for seeds ``i = 1..n``:

    ``mean = (1/n) Σ d_i``, ``std = sqrt(Σ (d_i − mean)² / (n − 1))`` and the interval
    ``mean ± t*_{n−1} · std / √n``, where ``t*_{n−1}`` is the two-sided Student-t critical
    value (:func:`t_critical`). Pairing removes what the seed does to *both* arms (the
    initialization, the batch order), so the interval is much narrower than one built from
    the two arms' spreads; it assumes the ``d_i`` are roughly normal. Same numbers as
    ``scipy.stats.ttest_rel(a, b).confidence_interval(confidence)``.
    """
    confidence = _checks.fraction("confidence", confidence)
    a, b = _scores("a", a), _scores("b", b)
    if len(a) != len(b):
        raise ValueError(
            f"a and b must have the same length (one score per seed, paired), "
            f"got {len(a)} and {len(b)}"
        )
    if len(a) < 2:
        raise ValueError(f"a and b must hold at least 2 paired scores, got {len(a)}")
    d = a - b
    n = len(d)
    mean = float(d.mean())
    std = float(d.std(ddof=1))
    half = t_critical(confidence, n - 1) * std / math.sqrt(n)
    return PairedDifference(mean, mean - half, mean + half, std, n, confidence)


def assert_beats(
    a: Any,
    b: Any,
    name_a: str = "A",
    name_b: str = "B",
    confidence: float = 0.95,
    higher_is_better: bool = True,
) -> PairedDifference:
    """Assert that arm A beats arm B beyond noise; return the :func:`paired_difference`.

    Passes only if the whole ``confidence`` interval of ``mean(a − b)`` lies on A's side of 0
    (``low > 0`` when higher scores are better, ``high < 0`` for losses). Otherwise raises
    ``AssertionError`` whose message gives the interval, so a failing notebook cell says by
    how much the claim missed.
    """
    name_a = _checks.instance("name_a", name_a, str)
    name_b = _checks.instance("name_b", name_b, str)
    higher_is_better = _checks.flag("higher_is_better", higher_is_better)
    diff = paired_difference(a, b, confidence)
    wins = diff.low > 0 if higher_is_better else diff.high < 0
    if not wins:
        better = "higher" if higher_is_better else "lower"
        raise AssertionError(
            f"{name_a} does not beat {name_b} beyond noise ({better} is better): "
            f"mean({name_a} − {name_b}) = {diff}, and the interval "
            f"{'includes 0' if diff.low <= 0 <= diff.high else f'favours {name_b}'}"
        )
    return diff


# --- 2. arms × seeds, tuned on validation, scored on test -----------------------------------


class Score(NamedTuple):
    """What one training run reports: its score on the validation and on the test split."""

    val: float
    test: float


def _grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the grid's values, in the grid's order (``[{}]`` for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class Arm:
    """One configuration of a comparison.

    ``run(seed, **hparams) -> Score`` trains one model with ``seed`` (its initialization and
    its batch order) and the hyper-parameters of one grid point, and returns its validation
    and test scores. ``grid`` maps hyper-parameter names to the values to try, e.g.
    ``{"lr": [1e-3, 3e-3]}`` (every combination is run). ``run_many(seeds, points)``, when
    given, runs all grid points × seeds at once and returns ``scores[point][seed]``
    (:func:`mlp_arm` trains them as one vectorized batch); it must agree with ``run``.
    """

    run: Callable[..., Score]
    grid: Mapping[str, Sequence] = field(default_factory=dict)
    run_many: Callable[[Sequence[int], Sequence[dict]], Sequence[Sequence[Score]]] | None = None

    def __post_init__(self) -> None:
        _checks.function("run", self.run, "run(seed, **hparams) -> Score(val, test)")
        _checks.instance("grid", self.grid, Mapping, "a dict of name -> list of values")
        grid = {}
        for key, values in self.grid.items():
            _checks.instance("grid keys", key, str, "str")
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise TypeError(f"grid[{key!r}] must be a list of values to try, "
                                f"got {type(values).__name__}")  # fmt: skip
            values = values.tolist() if hasattr(values, "tolist") else list(values)
            if not values:
                raise ValueError(f"grid[{key!r}] must be a non-empty list of values to try, "
                                 "got none")  # fmt: skip
            grid[key] = values
        object.__setattr__(self, "grid", grid)
        _checks.callable_or_none("run_many", self.run_many, "run_many(seeds, points) -> scores")

    def points(self) -> list[dict]:
        """The grid's hyper-parameter combinations (``[{}]`` when there is no grid)."""
        return _grid_points(self.grid)


@dataclass(frozen=True)
class ArmResult:
    """One arm of a :class:`Comparison`: the grid value chosen on validation and, for it, the
    per-seed validation and test scores; ``tuning`` lists every grid point with its mean
    validation score over the seeds; ``at_edge`` names the numeric grid keys whose chosen
    value is the smallest or largest tried (the optimum may lie outside: widen the grid)."""

    name: str
    chosen: dict
    val: tuple[float, ...]
    test: tuple[float, ...]
    tuning: tuple[tuple[dict, float], ...]
    at_edge: tuple[str, ...] = ()

    @property
    def chosen_text(self) -> str:
        """The chosen hyper-parameters as ``lr=0.001, momentum=0.9`` (``—`` without a grid),
        ``(edge)`` after a value at the end of its grid."""
        if not self.chosen:
            return "—"
        return ", ".join(
            (f"{k}={v:g}" if _is_number(v) else f"{k}={v}") + (" (edge)" * (k in self.at_edge))
            for k, v in self.chosen.items()
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _at_edge(grid: Mapping[str, list], chosen: dict) -> tuple[str, ...]:
    """Numeric grid keys (two values or more) whose chosen value is the grid's min or max."""
    return tuple(
        key for key, values in grid.items()
        if len(values) > 1 and all(map(_is_number, values))
        and chosen[key] in (min(values), max(values))
    )  # fmt: skip


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


class Comparison(Mapping):
    """The result of :func:`compare`: a mapping ``arm name -> per-seed test scores`` (NumPy
    arrays in the order of ``seeds``, for the chosen hyper-parameters), so that
    ``paired_difference(result["A"], result["B"])`` pairs the same seeds. Prints as a table;
    :meth:`to_frame` gives a ``pandas.DataFrame``."""

    def __init__(self, results: Mapping[str, ArmResult], seeds: Sequence[int],
                 higher_is_better: bool) -> None:  # fmt: skip
        self.results = dict(results)
        self.seeds = tuple(seeds)
        self.higher_is_better = higher_is_better

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.results:
            raise KeyError(f"no arm named {name!r}; arms: {list(self.results)}")
        scores = np.array(self.results[name].test)
        scores.flags.writeable = False
        return scores

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def chosen(self, name: str) -> dict:
        """The hyper-parameters chosen on validation for arm ``name``."""
        return dict(self.results[name].chosen)

    def paired(self, a: str, b: str, confidence: float = 0.95) -> PairedDifference:
        """:func:`paired_difference` of the test scores of arms ``a`` and ``b``."""
        return paired_difference(self[a], self[b], confidence)

    def assert_beats(self, a: str, b: str, confidence: float = 0.95) -> PairedDifference:
        """:func:`assert_beats` for arms ``a`` and ``b`` (test scores, paired by seed)."""
        return assert_beats(self[a], self[b], a, b, confidence, self.higher_is_better)

    def to_frame(self, per_seed: bool = False):
        """A ``pandas.DataFrame``: one row per arm (``chosen``, ``val_mean``, ``test_mean``,
        ``test_std`` with ``n − 1``, ``n_seeds``), or with ``per_seed=True`` the test scores,
        one row per seed and one column per arm."""
        import pandas as pd

        _checks.flag("per_seed", per_seed)
        if per_seed:
            return pd.DataFrame({name: r.test for name, r in self.results.items()},
                                index=pd.Index(self.seeds, name="seed"))  # fmt: skip
        rows = {
            name: {
                "chosen": r.chosen_text,
                "val_mean": float(np.mean(r.val)),
                "test_mean": float(np.mean(r.test)),
                "test_std": _std(r.test),
                "n_seeds": len(r.test),
                "at_grid_edge": bool(r.at_edge),
            }
            for name, r in self.results.items()
        }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("arm")

    def tuning_frame(self):
        """A ``pandas.DataFrame`` of every grid point tried: arm, hyper-parameters, mean
        validation score over the seeds, and whether it was chosen."""
        import pandas as pd

        rows = [
            {"arm": name, **point, "val_mean": val, "chosen": point == r.chosen}
            for name, r in self.results.items()
            for point, val in r.tuning
        ]
        return pd.DataFrame(rows)

    def _rows(self) -> list[tuple[str, str, str, str]]:
        return [
            (name, r.chosen_text, f"{np.mean(r.val):.4f}",
             f"{np.mean(r.test):.4f} ± {_std(r.test):.4f}")  # fmt: skip
            for name, r in self.results.items()
        ]

    _HEADER = ("arm", "chosen on val", "val mean", "test mean ± std")

    def __str__(self) -> str:
        rows = [self._HEADER, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"{len(self.seeds)} seeds {list(self.seeds)}; hyper-parameters chosen on the "
                     "validation split (mean over seeds); test std with n − 1")  # fmt: skip
        if any(r.at_edge for r in self.results.values()):
            lines.append("(edge): the best value is the end of its grid; the optimum may lie "
                         "beyond it, so widen the grid")  # fmt: skip
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self._HEADER) + " |", "|---|---|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in self._rows()]
        lines.append(f"\n{len(self.seeds)} seeds; hyper-parameters chosen on validation.")
        return "\n".join(lines)


def _as_score(value: Any, where: str) -> Score:
    """``value`` (a Score, a ``(val, test)`` pair or a dict) as a Score of floats; NaN (a
    diverged run) is allowed."""
    if isinstance(value, Mapping):
        value = (value.get("val"), value.get("test"))
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"{where} must return Score(val=..., test=...), got {value!r}")
    parts = []
    for part, x in zip(("val", "test"), value):
        if isinstance(x, torch.Tensor) and x.numel() == 1:
            x = x.item()
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise TypeError(f"{where} must return Score(val=..., test=...) of numbers, "
                            f"got {part}={x!r}")  # fmt: skip
        parts.append(float(x))
    return Score(*parts)


def compare(
    arms: Mapping[str, Arm | Callable[..., Score]],
    seeds: Sequence[int] = range(5),
    *,
    higher_is_better: bool = True,
) -> Comparison:
    """Run every arm on every seed, choose each arm's grid point on validation, report test.

    For arm ``a`` with grid points ``h`` and seeds ``s = 1..n``:
    ``h*_a = argbest_h (1/n) Σ_s val(a, h, s)`` (the first one on ties; a NaN validation
    score — a diverged run — never wins), and the arm's result is the test scores
    ``test(a, h*_a, s)`` of the *same* runs, one per seed, so two arms pair seed by seed.
    ``arms`` maps names to :class:`Arm` (or a bare ``run(seed) -> Score`` callable);
    ``higher_is_better=False`` for losses. Chapters 3.1–3.3.
    """
    _checks.instance("arms", arms, Mapping, "a dict of name -> Arm")
    if not arms:
        raise ValueError("arms must hold at least one arm, got none")
    seeds = _checks.ints("seeds", seeds, 0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    higher_is_better = _checks.flag("higher_is_better", higher_is_better)
    results = {}
    for name, arm in arms.items():
        _checks.instance("arm names", name, str, "str")
        if not isinstance(arm, Arm):
            _checks.function(f"arms[{name!r}]", arm, "an Arm or run(seed) -> Score")
            arm = Arm(run=arm)
        points = arm.points()
        if arm.run_many is not None:
            table = arm.run_many(list(seeds), points)
            if len(table) != len(points) or any(len(row) != len(seeds) for row in table):
                raise ValueError(
                    f"arms[{name!r}].run_many must return one row of {len(seeds)} scores per "
                    f"grid point ({len(points)} points)"
                )
        else:
            table = [[arm.run(seed, **point) for seed in seeds] for point in points]
        table = [[_as_score(x, f"arms[{name!r}].run") for x in row] for row in table]
        means = [float(np.mean([s.val for s in row])) for row in table]
        worst = -math.inf if higher_is_better else math.inf
        keyed = [worst if math.isnan(m) else m for m in means]
        best = (max if higher_is_better else min)(range(len(points)), key=keyed.__getitem__)
        results[name] = ArmResult(
            name=name,
            chosen=points[best],
            val=tuple(s.val for s in table[best]),
            test=tuple(s.test for s in table[best]),
            tuning=tuple(zip(points, means)),
            at_edge=_at_edge(arm.grid, points[best]),
        )
    return Comparison(results, seeds, higher_is_better)


# --- 3. K small MLPs trained at once ---------------------------------------------------------

_ACTIVATIONS: dict[type, Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    nn.ReLU: lambda m: torch.relu,
    nn.Tanh: lambda m: torch.tanh,
    nn.Sigmoid: lambda m: torch.sigmoid,
    nn.GELU: lambda m: partial(F.gelu, approximate=m.approximate),
    nn.LeakyReLU: lambda m: partial(F.leaky_relu, negative_slope=m.negative_slope),
    nn.Identity: lambda m: (lambda h: h),
}


def _plan(model: nn.Module) -> list:
    """The forward pass of an ``nn.Sequential`` of Flatten / Linear / activation layers as a
    list: a ``str`` (the Linear layer's name in the state dict) or a function of the stacked
    activations ``(K, B, features)``."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            "make_model() must build an nn.Sequential of Flatten, Linear and activation layers "
            f"to be trained stacked, got {type(model).__name__}; use fit_arm for other models"
        )
    if any(True for _ in model.buffers()):
        raise TypeError("make_model() must build a model without buffers (no BatchNorm) to be "
                        "trained stacked; use fit_arm for it")  # fmt: skip
    plan = []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Sequential):
            continue
        if type(layer) is nn.Linear:  # exactly: a subclass (e.g. with adapters) may compute more
            plan.append(name)
        elif type(layer) is nn.Flatten and (layer.start_dim, layer.end_dim) == (1, -1):
            plan.append(lambda h: h.flatten(2))
        elif type(layer) in _ACTIVATIONS:
            plan.append(_ACTIVATIONS[type(layer)](layer))
        else:
            raise TypeError(
                f"make_model() must build an nn.Sequential of Flatten, Linear and activation "
                f"layers ({', '.join(t.__name__ for t in _ACTIVATIONS)}) to be trained "
                f"stacked, got a {type(layer).__name__} layer; use fit_arm for this model"
            )
    return plan


def _forward(plan: list, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The K models' logits ``(K, B, classes)`` for inputs ``x`` of shape ``(K, B, ...)``:
    each Linear layer is one batched product ``h ← b + h Wᵀ`` over the K models."""
    h = x
    for step in plan:
        if isinstance(step, str):
            weight, bias = params[step + ".weight"], params.get(step + ".bias")
            if h.ndim != 3:
                raise ValueError(f"inputs must be flat features (add nn.Flatten()), got "
                                 f"shape {tuple(h.shape[2:])} per example")  # fmt: skip
            if bias is None:
                h = torch.bmm(h, weight.transpose(1, 2))
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        else:
            h = step(h)
    return h


def _per_model(name: str, value: Any, k: int, check: Callable) -> torch.Tensor:
    """A hyper-parameter given once or once per model, as a float64 tensor of shape ``(k,)``."""
    if isinstance(value, numbers.Real):  # bool too: check() refuses it
        values = [check(name, value)] * k
    else:
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a number or a list of {k} numbers (one per model), "
                            f"got {type(value).__name__}")  # fmt: skip
        if len(value) != k:
            raise ValueError(f"{name} must be a number or a list of {k} numbers (one per model), "
                             f"got {len(value)} values")  # fmt: skip
        values = [check(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return torch.tensor(values, dtype=torch.float64)


class _StackedOptimizer:
    """SGD (momentum, Nesterov, L2 weight decay), Adam and AdamW on stacked parameters
    ``(K, ...)``: the update of ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (``foreach=False``),
    line by line, with per-model ``lr``, ``momentum`` and ``weight_decay`` as tensors of shape
    ``(K, 1, ..., 1)`` that broadcast over each parameter."""

    def __init__(self, params: list[torch.Tensor], kind: str, lr: torch.Tensor,
                 momentum: torch.Tensor, weight_decay: torch.Tensor, nesterov: bool,
                 betas: tuple[float, float], eps: float) -> None:  # fmt: skip
        self.params, self.kind, self.nesterov = params, kind, nesterov
        self.betas, self.eps, self.lr64 = betas, eps, lr
        self.use_wd = bool((weight_decay != 0).any())
        self.use_momentum = bool((momentum != 0).any())
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]
        self.step_count = 0

        def shaped(values: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            """float64 values → ``p``'s dtype and device, shape ``(K, 1, ..., 1)``."""
            return values.to(device=p.device, dtype=p.dtype).view(-1, *[1] * (p.ndim - 1))

        self.neg_lr = [shaped(-lr, p) for p in params]
        self.momentum = [shaped(momentum, p) for p in params]
        self.wd = [shaped(weight_decay, p) for p in params]
        self.decay = [shaped(1 - lr * weight_decay, p) for p in params]  # AdamW: 1 − η λ

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        self.step_count += 1
        if self.kind != "sgd":  # −η / (1 − β₁ᵗ), in float64 like torch's Python floats
            p = self.params[0]
            self.step_size = (-self.lr64 / (1 - self.betas[0] ** self.step_count)).to(
                device=p.device, dtype=p.dtype)  # fmt: skip
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.kind == "sgd":
                self._sgd(i, p, g)
            else:
                self._adam(i, p, g)

    # The gradients are fresh tensors from autograd.grad: updating them in place saves an
    # allocation (and page faults) per step; large temporaries get buffers kept in the state.
    def _sgd(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        if self.use_wd:
            g.addcmul_(p, self.wd[i])  # g ← g + λ θ
        if self.use_momentum:
            buf = self.state[i].get("momentum_buffer")
            if buf is None:
                buf = self.state[i]["momentum_buffer"] = g.clone()  # v₁ = g₁
            else:
                buf.mul_(self.momentum[i]).add_(g)  # v ← μ v + g
            g = g.addcmul_(buf, self.momentum[i]) if self.nesterov else buf  # g + μ v or v
        p.addcmul_(g, self.neg_lr[i])  # θ ← θ − η g

    def _adam(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        state = self.state[i]
        if not state:
            for key in ("exp_avg", "exp_avg_sq", "denom", "update"):
                state[key] = torch.zeros_like(p)
        m, v, denom, update = (state[key] for key in ("exp_avg", "exp_avg_sq", "denom", "update"))
        if self.use_wd:
            if self.kind == "adamw":
                p.mul_(self.decay[i])  # θ ← θ (1 − η λ)   (decoupled, AdamW)
            else:
                g.addcmul_(p, self.wd[i])  # g ← g + λ θ   (L2, Adam)
        m.lerp_(g, 1 - beta1)  # m ← β₁ m + (1 − β₁) g
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v ← β₂ v + (1 − β₂) g²
        bias_correction2_sqrt = (1 - beta2**self.step_count) ** 0.5
        torch.sqrt(v, out=denom).div_(bias_correction2_sqrt).add_(self.eps)  # √v̂ + ε
        step_size = self.step_size.view(-1, *[1] * (p.ndim - 1))
        torch.mul(m, step_size, out=update).div_(denom)
        p.add_(update)  # θ ← θ − η/(1 − β₁ᵗ) · m / (√v̂ + ε)


def _batch_orders(n: int, batch_size: int, seed: int, epochs: int) -> torch.Tensor:
    """``(epochs, n)``: epoch by epoch, the example order of
    ``course_lib.data.batch_loader(split, batch_size, shuffle=True, seed=seed)`` — the
    training loader ``make_loaders(splits, batch_size, seed=seed)`` gives :func:`fit`."""
    index = torch.arange(n)
    loader = batch_loader(Split(index, index), batch_size, shuffle=True, seed=seed)
    sampler = loader.sampler
    epochs_out = []
    for _ in range(epochs):
        if isinstance(sampler, BatchSampler):  # the loader's own index lists, no data loaded
            epochs_out.append(torch.tensor([i for batch in sampler for i in batch]))
        else:  # pragma: no cover - a loader of another kind: read the order from its batches
            with torch.random.fork_rng(devices=[]):
                epochs_out.append(torch.cat([batch for batch, _ in loader]))
    return torch.stack(epochs_out)


@dataclass(frozen=True, repr=False)
class StackedRun:
    """K models trained together by :func:`train_mlps`.

    ``seeds`` and ``hparams`` (``lr``, ``momentum``, ``weight_decay``) per model; ``history``:
    tensors of shape ``(K, epochs)`` — ``train_loss``, ``train_accuracy`` (means over the
    epoch's examples), ``val_loss``, ``val_accuracy`` (after each epoch);
    ``val_accuracy``, ``val_loss``, ``test_accuracy``, ``test_loss``: shape ``(K,)`` after the
    last epoch; ``state``: the stacked state dict (``state[name][k]`` is model k's tensor).
    """

    seeds: tuple[int, ...]
    hparams: tuple[dict, ...]
    optimizer: str
    epochs: int
    history: dict[str, torch.Tensor]
    val_accuracy: torch.Tensor
    val_loss: torch.Tensor
    test_accuracy: torch.Tensor
    test_loss: torch.Tensor
    state: dict[str, torch.Tensor]
    template: nn.Module

    def __len__(self) -> int:
        return len(self.seeds)

    def model(self, k: int) -> nn.Module:
        """Model ``k`` as an ordinary ``nn.Module`` (on the CPU) with its trained weights."""
        k = _checks.integer("k", k, 0, len(self) - 1)
        model = copy.deepcopy(self.template)
        model.load_state_dict({name: value[k].cpu() for name, value in self.state.items()})
        return model

    def scores(self, metric: str = "accuracy") -> list[Score]:
        """One :class:`Score` (validation, test) per model: ``accuracy`` or ``loss``."""
        metric = _checks.one_of("metric", metric, ("accuracy", "loss"))
        val, test = getattr(self, f"val_{metric}"), getattr(self, f"test_{metric}")
        return [Score(float(v), float(t)) for v, t in zip(val, test)]

    def __repr__(self) -> str:
        def spread(x: torch.Tensor) -> str:
            return f"{x.mean():.4f} ± {x.std():.4f}" if len(x) > 1 else f"{x.mean():.4f}"

        return (f"StackedRun({len(self)} models, optimizer={self.optimizer!r}, "
                f"epochs={self.epochs}, val_accuracy={spread(self.val_accuracy)}, "
                f"test_accuracy={spread(self.test_accuracy)})")  # fmt: skip


def _check_splits(splits) -> None:
    if not all(hasattr(splits, part) for part in ("train", "val", "test")):
        raise TypeError("splits must be a Splits (train, val, test) of (X, y) pairs, "
                        f"got {type(splits).__name__}")  # fmt: skip
    for part in ("train", "val", "test"):
        X, y = getattr(splits, part)
        _checks.tensor(f"splits.{part}.X", X, floating=True, nonempty=True)
        _checks.tensor(f"splits.{part}.y", y, ndim=1, nonempty=True)
        if y.is_floating_point() or len(X) != len(y):
            raise ValueError(f"splits.{part} must pair inputs with as many integer class "
                             f"labels, got X {tuple(X.shape)} and y {tuple(y.shape)} "
                             f"of dtype {y.dtype}")  # fmt: skip


@torch.no_grad()
def _evaluate(plan, params, X, y, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model mean cross-entropy and number of correct predictions on ``(X, y)``, ``(K,)``."""
    k = next(iter(params.values())).shape[0]
    loss = torch.zeros(k, device=X.device)
    correct = torch.zeros(k, device=X.device)
    for start in range(0, len(y), chunk):
        xb, yb = X[start:start + chunk], y[start:start + chunk]
        logits = _forward(plan, params, xb.expand(k, *xb.shape))
        loss += F.cross_entropy(logits.flatten(0, 1), yb.repeat(k), reduction="none") \
            .view(k, -1).sum(1)  # fmt: skip
        correct += (logits.argmax(-1) == yb).sum(1)
    return loss / len(y), correct


_OPTIMIZERS = ("sgd", "adam", "adamw")
_PER_MODEL = ("lr", "momentum", "weight_decay")


def train_mlps(
    splits,
    seeds: Sequence[int],
    *,
    optimizer: str = "adam",
    lr: float | Sequence[float] = 1e-3,
    momentum: float | Sequence[float] = 0.0,
    weight_decay: float | Sequence[float] | None = None,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    epochs: int = 10,
    batch_size: int = 64,
    hidden: Sequence[int] | None = None,
    make_model: Callable[[], nn.Module] | None = None,
    device: str | torch.device | None = None,
) -> StackedRun:
    """Train K = ``len(seeds)`` MLP classifiers at once, one per seed (chapters 3.1–3.3).

    Model k is exactly the one a sequential run would train: it is built by ``make_model()``
    (default ``MLP(in_features, hidden, classes)``, sizes read from the data) right after
    ``torch.manual_seed(seeds[k])``, it sees the batches of
    ``make_loaders(splits, batch_size, seed=seeds[k])``, and it minimizes its own mean
    cross-entropy with ``torch.optim``'s update for ``optimizer`` (``"sgd"``, ``"adam"``,
    ``"adamw"``). ``lr``, ``momentum`` (SGD) and ``weight_decay`` (default 0, or 0.01 for
    AdamW as in ``torch.optim.AdamW``) are one number or one per model, so a grid × seeds
    trains as one batch (repeat a seed to try several values on it).

    The K models' weights are stacked into tensors ``W`` of shape ``(K, out, in)``; each
    layer is one batched product ``H ← b + H Wᵀ`` (``torch.baddbmm``) over inputs
    ``(K, B, in)``. The loss is ``Σ_k L_k``: model k's parameters get exactly ``∇L_k``. One
    large operation replaces K small ones, so the per-operation overhead that dominates
    small models is paid once (``benchmarks/experiment_bench.py``). Validation and test
    accuracy are computed on the whole split after every epoch / at the end; the loss and
    accuracy stay on the device until the end (no synchronisation per step).
    """
    _check_splits(splits)
    seeds = _checks.ints("seeds", seeds, 0)
    optimizer = _checks.one_of("optimizer", optimizer, _OPTIMIZERS)
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    nesterov = _checks.flag("nesterov", nesterov)
    _checks.instance("betas", betas, (tuple, list), "a pair (beta1, beta2)")
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    betas = tuple(_checks.real(f"betas[{i}]", b, 0, 1, high_open=True) for i, b in enumerate(betas))
    eps = _checks.real("eps", eps, 0)
    k = len(seeds)
    if weight_decay is None:
        weight_decay = 0.01 if optimizer == "adamw" else 0.0
    lr = _per_model("lr", lr, k, _checks.positive)
    momentum = _per_model("momentum", momentum, k, partial(_checks.real, low=0))
    weight_decay = _per_model("weight_decay", weight_decay, k, partial(_checks.real, low=0))
    if optimizer != "sgd" and (momentum != 0).any():
        raise ValueError(f"momentum must be 0 for optimizer={optimizer!r} (Adam has betas), "
                         f"got {momentum.tolist()}")  # fmt: skip
    if nesterov and (optimizer != "sgd" or (momentum == 0).any()):
        raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0 for every model")
    if make_model is not None and hidden is not None:
        raise ValueError("give hidden (for the default MLP) or make_model, not both")
    _checks.callable_or_none("make_model", make_model, "make_model() -> nn.Sequential")
    if make_model is None:
        hidden = (300, 100) if hidden is None else _checks.ints("hidden", hidden)
        classes = int(max(part.y.max() for part in (splits.train, splits.val, splits.test))) + 1
        make_model = partial(MLP, splits.train.X[0].numel(), hidden, classes)
    device = select_device(device)

    # Build each model after seeding with its seed (the caller's RNG state is left alone).
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(make_model())
    _checks.module("make_model()", models[0])
    plan = _plan(models[0])
    names = [name for name, _ in models[0].named_parameters()]
    shapes = [tuple(p.shape) for p in models[0].parameters()]
    if any([tuple(p.shape) for p in m.parameters()] != shapes for m in models):
        raise ValueError("make_model() must build models of one architecture for every seed")
    params = {
        name: torch.stack([dict(m.named_parameters())[name].detach() for m in models])
        .to(device).requires_grad_()  # fmt: skip
        for name in names
    }
    leaves = list(params.values())
    opt = _StackedOptimizer(leaves, optimizer, lr, momentum, weight_decay, nesterov, betas, eps)

    X, y = splits.train.X.to(device), splits.train.y.to(device)
    n = len(y)
    unique = {seed: _batch_orders(n, batch_size, seed, epochs) for seed in set(seeds)}
    orders = torch.stack([unique[seed] for seed in seeds]).to(device)  # (K, epochs, n)
    val_X, val_y = splits.val.X.to(device), splits.val.y.to(device)

    history = {key: torch.zeros(k, epochs, device=device)
               for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}  # fmt: skip
    for epoch in range(epochs):
        total_loss = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device)
        for start in range(0, n, batch_size):
            index = orders[:, epoch, start:start + batch_size]  # (K, B): model k's batch
            inputs, targets = X[index], y[index]
            logits = _forward(plan, params, inputs)
            losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none") \
                .view(k, -1).mean(1)  # L_k: model k's mean loss on its batch  # fmt: skip
            grads = torch.autograd.grad(losses.sum(), leaves)  # ∂(Σ L_j)/∂θ_k = ∂L_k/∂θ_k
            opt.step(grads)
            total_loss += losses.detach() * index.shape[1]
            correct += (logits.detach().argmax(-1) == targets).sum(1)
        history["train_loss"][:, epoch] = total_loss / n
        history["train_accuracy"][:, epoch] = correct  # a count until the end
        frozen = {name: p.detach() for name, p in params.items()}
        history["val_loss"][:, epoch], history["val_accuracy"][:, epoch] = _evaluate(
            plan, frozen, val_X, val_y
        )
    frozen = {name: p.detach() for name, p in params.items()}
    test_loss, test_correct = _evaluate(plan, frozen, splits.test.X.to(device),
                                        splits.test.y.to(device))  # fmt: skip
    # One transfer at the end; accuracies = exact counts / n in float64 (not on MPS).
    history = {key: value.cpu().double() for key, value in history.items()}
    history["train_accuracy"] /= n
    history["val_accuracy"] /= len(val_y)
    test_accuracy = test_correct.cpu().double() / len(splits.test.y)
    hparams = tuple(
        {"lr": float(a), "momentum": float(b), "weight_decay": float(c)}
        for a, b, c in zip(lr, momentum, weight_decay)
    )
    return StackedRun(
        seeds=tuple(seeds),
        hparams=hparams,
        optimizer=optimizer,
        epochs=epochs,
        history=history,
        val_accuracy=history["val_accuracy"][:, -1].clone(),
        val_loss=history["val_loss"][:, -1].clone(),
        test_accuracy=test_accuracy.cpu(),
        test_loss=test_loss.cpu().double(),
        state={name: p.detach() for name, p in params.items()},
        template=models[0],
    )


_TRAIN_MLPS_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "nesterov", "betas", "eps",
                    "epochs", "batch_size", "hidden", "make_model", "device")  # fmt: skip


def mlp_arm(splits, *, grid: Mapping[str, Sequence] | None = None, metric: str = "accuracy",
            **fixed) -> Arm:  # fmt: skip
    """An :class:`Arm` that trains MLPs with :func:`train_mlps`; ``fixed`` are its keyword
    arguments (``optimizer``, ``epochs``, ``hidden``, …) and ``grid`` the values to tune, e.g.
    ``mlp_arm(splits, optimizer="sgd", momentum=0.9, grid={"lr": [0.01, 0.03, 0.1]})``.

    :func:`compare` calls its ``run_many``: every grid point × seed is one model of a single
    vectorized :func:`train_mlps` batch (grid keys ``lr``, ``momentum``, ``weight_decay``
    vary per model; other keys, e.g. ``hidden``, make one batch per value). ``metric``:
    the score reported, ``"accuracy"`` (default) or ``"loss"`` (then compare with
    ``higher_is_better=False``).
    """
    _check_splits(splits)
    metric = _checks.one_of("metric", metric, ("accuracy", "loss"))
    grid = {} if grid is None else grid
    _checks.instance("grid", grid, Mapping, "a dict of name -> list of values")
    for key in [*fixed, *grid]:
        _checks.one_of("mlp_arm keyword and grid keys", key, _TRAIN_MLPS_KEYS)
    if set(fixed) & set(grid):
        raise ValueError(f"grid keys must not also be fixed arguments, got both for "
                         f"{sorted(set(fixed) & set(grid))}")  # fmt: skip

    def run_many(seeds: Sequence[int], points: Sequence[dict]) -> list[list[Score]]:
        table: list[list[Score]] = [[] for _ in points]
        groups: dict[str, list[int]] = {}
        for i, point in enumerate(points):  # one batch per value of the keys that cannot vary
            shared = sorted((key, repr(v)) for key, v in point.items() if key not in _PER_MODEL)
            groups.setdefault(repr(shared), []).append(i)
        for members in groups.values():
            first = points[members[0]]
            kwargs = {**fixed, **{key: v for key, v in first.items() if key not in _PER_MODEL}}
            for key in _PER_MODEL:
                if key in first:
                    kwargs[key] = [points[i][key] for i in members for _ in seeds]
            run = train_mlps(splits, [s for _ in members for s in seeds], **kwargs)
            scores = run.scores(metric)
            for j, i in enumerate(members):
                table[i] = scores[j * len(seeds):(j + 1) * len(seeds)]
        return table

    def run(seed: int, **hparams) -> Score:
        return run_many([seed], [hparams])[0][0]

    return Arm(run=run, grid=grid, run_many=run_many)


_TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def fit_arm(
    make_model: Callable[[], nn.Module],
    splits,
    *,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    grid: Mapping[str, Sequence] | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    metric: str = "accuracy",
    device: str | torch.device | None = None,
    **optimizer_kwargs,
) -> Arm:
    """An :class:`Arm` that trains one model per seed with :func:`course_lib.train.fit` —
    for models that do not stack (a CNN with BatchNorm, a Transformer); same interface as
    :func:`mlp_arm`, one run after another.

    Each run: ``seed_everything(seed)``, ``model = make_model()``, the loaders of
    ``make_loaders(splits, batch_size, seed=seed)``, ``optimizer(model.parameters(),
    **optimizer_kwargs, **hparams)`` (``"sgd"``, ``"adam"``, ``"adamw"`` name the
    ``torch.optim`` classes), ``fit`` for ``epochs``, then ``evaluate`` on validation and
    test. Grid keys are optimizer arguments, or ``epochs`` / ``batch_size``.
    """
    from course_lib.train import evaluate, fit  # imported here: train imports nothing of ours

    _checks.function("make_model", make_model, "make_model() -> nn.Module")
    if isinstance(optimizer, str):
        optimizer = _TORCH_OPTIMIZERS[_checks.one_of("optimizer", optimizer, _TORCH_OPTIMIZERS)]
    _checks.function("optimizer", optimizer, "optimizer(params, **hparams) -> Optimizer")
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    _checks.function("loss_fn", loss_fn, "loss_fn(outputs, targets) -> tensor")
    metric = _checks.one_of("metric", metric, ("accuracy", "loss"))
    grid = {} if grid is None else grid

    def run(seed: int, **hparams) -> Score:
        seed = _checks.integer("seed", seed, 0)
        run_epochs = _checks.positive_int("epochs", hparams.pop("epochs", epochs))
        run_batch = _checks.positive_int("batch_size", hparams.pop("batch_size", batch_size))
        seed_everything(seed)
        model = make_model()
        train, val, test = make_loaders(splits, run_batch, seed=seed)
        opt = optimizer(model.parameters(), **{**optimizer_kwargs, **hparams})
        fit(model, train, None, opt, loss_fn, run_epochs, device, progress=False)
        return Score(evaluate(model, val, loss_fn, device)[metric],
                     evaluate(model, test, loss_fn, device)[metric])  # fmt: skip

    return Arm(run=run, grid=grid)
