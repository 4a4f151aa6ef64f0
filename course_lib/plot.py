"""One plotting style for the whole book (every chapter). The only module importing matplotlib.

Each chapter adds the plots it needs here: training curves (chapter 1), trajectories on
contours (3.1), sparsity maps (3.2), image grids (3.3), Pareto fronts (3.4, 7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt

STYLE = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}


def use_style() -> None:
    """Apply the course's matplotlib style (called by every plotting helper)."""
    plt.rcParams.update(STYLE)


def _axes(ax=None, ncols: int = 1, figsize=None):
    use_style()
    if ax is not None:
        return ax.figure, ax
    return plt.subplots(1, ncols, figsize=figsize, squeeze=True)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str | None):
    """Label the axes, add the legend and the title (if any), tighten the layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_history(
    histories: Mapping[str, Mapping[str, Sequence[float]]] | Mapping[str, Sequence[float]],
    metrics: Sequence[str] = ("loss", "accuracy"),
    title: str | None = None,
):
    """Training curves: one panel per metric, train dashed and validation solid.

    ``histories`` is one history from :func:`course_lib.train.fit`, or a mapping
    ``label → history`` to compare several runs on the same axes. Returns the figure.
    """
    if not isinstance(histories, Mapping):
        raise TypeError(
            f"histories must be a history dict or a mapping label → history, "
            f"got {type(histories).__name__}"
        )
    if "train_loss" in histories:  # a single history
        histories = {"": histories}
    if not histories:
        raise ValueError("histories must hold at least one history, got an empty mapping")
    if isinstance(metrics, str) or not metrics:
        raise ValueError(
            f"metrics must be a non-empty sequence of 'loss', 'accuracy', got {metrics!r}"
        )
    for metric in metrics:
        if metric not in ("loss", "accuracy"):
            raise ValueError(f"metrics must be 'loss' or 'accuracy', got {metric!r}")
    for label, history in histories.items():
        if not isinstance(history, Mapping):
            raise TypeError(
                f"histories[{label!r}] must be a history dict (as returned by fit), "
                f"got {type(history).__name__}"
            )
        for key in ("epoch", *(f"train_{m}" for m in metrics)):
            if key not in history:
                raise ValueError(
                    f"histories[{label!r}] must have the key {key!r} (a history from fit), "
                    f"got keys {sorted(history)}"
                )
            if len(history[key]) != len(history["epoch"]):
                raise ValueError(
                    f"histories[{label!r}][{key!r}] must have one value per epoch "
                    f"({len(history['epoch'])}), got {len(history[key])}"
                )
    fig, axes = _axes(ncols=len(metrics), figsize=(5.0 * len(metrics), 3.6))
    axes = [axes] if len(metrics) == 1 else list(axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(histories.items()):
        color = colors[i % len(colors)]
        prefix = f"{label} " if label else ""
        for ax, metric in zip(axes, metrics, strict=True):
            epochs = history["epoch"]
            ax.plot(epochs, history[f"train_{metric}"], "--", color=color, label=f"{prefix}train")
            if history.get(f"val_{metric}"):
                ax.plot(epochs, history[f"val_{metric}"], "-", color=color, label=f"{prefix}val")
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- chapters 1 and 2: cost of width and depth, concept map ------------------------------


def plot_cost_scaling(
    rows: Sequence[Mapping[str, float]], x: str, title: str | None = None, ax=None
):
    """Parameters, FLOPs (left, log scale) and measured latency (right) against ``x``.

    ``rows`` are dicts with keys ``x``, ``"parameters"``, ``"flops"`` and ``"latency_ms"``
    (chapter 1: how the cost of a network grows with its width and depth). Returns the axes.
    """
    if not rows:
        raise ValueError("rows must hold at least one measurement, got none")
    for key in (x, "parameters", "flops", "latency_ms"):
        if key not in rows[0]:
            raise ValueError(f"rows must have the key {key!r}")
    fig, ax = _axes(ax)
    xs = [r[x] for r in rows]
    ax.plot(xs, [r["parameters"] for r in rows], "o-", label="parameters")
    ax.plot(xs, [r["flops"] for r in rows], "s-", label="FLOPs per batch")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("count (log scale)")
    right = ax.twinx()
    right.plot(xs, [r["latency_ms"] for r in rows], "^--", color="C3", label="latency (ms)")
    right.set_ylabel("median latency (ms)", color="C3")
    right.grid(False)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left")
    if title:
        ax.set_title(title)
    return ax


def plot_concept_map(ax=None):
    """The four kinds of optimization around the model, with their interactions (chapter 2).

    Labels are English only: matplotlib's default fonts have no CJK glyphs.
    """
    fig, ax = _axes(ax, figsize=(7.5, 5.5))
    boxes = {
        "Parameters\nGD · SGD · Adam\n§3.1": (0.5, 0.9),
        "Structure\npruning · distillation\n§3.2": (0.1, 0.5),
        "Data\nscaling · augmentation · sparsity\n§3.3": (0.9, 0.5),
        "Compute\nquantization · parallelism\n§3.4": (0.5, 0.1),
    }
    centre = (0.5, 0.5)
    ax.text(*centre, "model\n+ loss", ha="center", va="center", fontsize=12,
            bbox=dict(boxstyle="circle,pad=0.6", fc="#fde9c9", ec="#c77c02"))
    for label, (bx, by) in boxes.items():
        ax.text(bx, by, label, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.5", fc="#e3edf7", ec="#2c6aa0"))
        arrow = dict(arrowstyle="->", color="#2c6aa0", shrinkA=38, shrinkB=30)
        ax.annotate("", xy=centre, xytext=(bx, by), arrowprops=arrow)
    links = [
        ((0.1, 0.5), (0.5, 0.9), "prune, then\nfine-tune"),
        ((0.9, 0.5), (0.5, 0.9), "scaling sets\nthe step size"),
        ((0.1, 0.5), (0.5, 0.1), "only structured\npruning is faster"),
        ((0.9, 0.5), (0.5, 0.1), "batching and\nloading cost time"),
    ]
    for start, end, text in links:
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="<->", color="#888888",
                    linestyle="--", shrinkA=45, shrinkB=45, connectionstyle="arc3,rad=0.25"))
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx + (0.08 if mx > 0.5 else -0.08), my + (0.06 if my > 0.5 else -0.06), text,
                ha="center", va="center", fontsize=8, color="#555555")
    ax.set_xlim(-0.15, 1.15)
    ax.set_ylim(-0.05, 1.05)
    ax.axis("off")
    return ax


# --- chapter 3.1: optimizer trajectories on contours ------------------------------------------


def plot_trajectories(
    f,
    trajectories: Mapping[str, object],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    levels: int = 20,
    minimum: tuple[float, float] | None = None,
    title: str | None = None,
    ax=None,
):
    """Paths of optimizers drawn over the contour lines of a 2-D function (chapter 3.1).

    ``f(x, y)`` is a torch function (e.g. :func:`course_lib.optim.quadratic`); each value of
    ``trajectories`` is a :class:`course_lib.optim.Trajectory` or an ``(n, 2)`` array of points.
    Contour levels are spaced logarithmically, so both the steep walls and the flat floor of
    a valley show. ``minimum`` marks the optimum with a star. Returns the figure.
    """
    import numpy as np
    import torch

    if not callable(f):
        raise TypeError(f"f must be callable: f(x, y) -> tensor, got {type(f).__name__}")
    if not trajectories:
        raise ValueError("trajectories must hold at least one path, got none")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    for name, lim in (("xlim", xlim), ("ylim", ylim)):
        if len(lim) != 2 or not lim[0] < lim[1]:
            raise ValueError(f"{name} must be (low, high) with low < high, got {lim!r}")
    fig, ax = _axes(ax, figsize=(5.5, 4.2))
    xs = torch.linspace(xlim[0], xlim[1], 200, dtype=torch.float64)
    ys = torch.linspace(ylim[0], ylim[1], 200, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    Z = f(X, Y).numpy()
    low = max(float(Z.min()), 1e-3 * float(Z.max()) + 1e-12)
    ax.contour(X.numpy(), Y.numpy(), Z, levels=np.geomspace(low, float(Z.max()), levels),
               colors="0.6", linewidths=0.7)  # fmt: skip
    for i, (name, path) in enumerate(trajectories.items()):
        points = np.asarray(getattr(path, "points", path), dtype=float)
        color = f"C{i % 10}"
        ax.plot(points[:, 0], points[:, 1], "-", color=color, linewidth=1.4, label=name)
        if len(points) <= 150:  # short runs: mark every iterate; long ones would be a smear
            ax.plot(points[:, 0], points[:, 1], ".", color=color, markersize=3)
        ax.plot(points[0, 0], points[0, 1], "o", color="black", markersize=5)
    if minimum is not None:
        ax.plot(*minimum, "*", color="gold", markersize=14, markeredgecolor="black", zorder=5)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(False)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_mean_std(
    runs: Mapping[str, Sequence[Sequence[float]]],
    xlabel: str = "epoch",
    ylabel: str = "loss",
    logy: bool = False,
    title: str | None = None,
    ax=None,
):
    """Mean curve ± one standard deviation over repeated runs (seeds), one band per label
    (chapter 3.1). Each value of ``runs`` is a list of equally long curves, one per seed."""
    import numpy as np

    if not runs:
        raise ValueError("runs must hold at least one label, got none")
    arrays = {}
    for name, curves in runs.items():
        try:
            values = np.asarray(curves, dtype=float)
        except ValueError:  # ragged: curves of different lengths
            values = np.empty(0)
        if values.ndim != 2 or values.size == 0:
            lengths = (
                [len(c) if hasattr(c, "__len__") else "a number" for c in curves]
                if hasattr(curves, "__iter__")
                else type(curves).__name__
            )
            raise ValueError(
                f"runs[{name!r}] must be a non-empty list of equally long curves, "
                f"got curve lengths {lengths}"
            )
        arrays[name] = values
    fig, ax = _axes(ax)
    for i, (name, values) in enumerate(arrays.items()):
        mean, std = values.mean(axis=0), values.std(axis=0)
        steps = np.arange(1, values.shape[1] + 1)
        ax.plot(steps, mean, color=f"C{i % 10}", label=f"{name} (n={len(values)})")
        ax.fill_between(steps, mean - std, mean + std, color=f"C{i % 10}", alpha=0.2)
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, xlabel, ylabel, title)


def plot_power_law(
    x: Sequence[float],
    measured: Sequence[float],
    predicted: Sequence[float],
    xlabel: str = "batch size B",
    ylabel: str = "gradient variance",
    law: str = "σ²/B",
    title: str | None = None,
    ax=None,
):
    """Measured points against a predicted power law on log-log axes (chapter 3.1: the
    variance of a minibatch gradient against :math:`\\sigma^2/B`)."""
    if not len(x) == len(measured) == len(predicted):
        raise ValueError(
            "x, measured and predicted must have the same length, "
            f"got {len(x)}, {len(measured)} and {len(predicted)}"
        )
    fig, ax = _axes(ax)
    ax.loglog(x, predicted, "-", color="C1", label=f"law {law}")
    ax.loglog(x, measured, "o", color="C0", label="measured")
    return _finish(fig, ax, xlabel, ylabel, title)


# --- chapter 3.2: sparsity maps and pruning curves --------------------------------------------


def plot_pruning_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    baseline: float | None = None,
    tolerance: float | None = None,
    ax=None,
):
    """Validation accuracy versus sparsity, one line per pruning method (chapter 3.2).

    ``curves`` maps a label to ``(sparsities, accuracies)`` (fractions in ``[0, 1]``).
    ``baseline`` draws the dense model's accuracy; ``tolerance`` shades the band
    ``[baseline − tolerance, baseline]`` that counts as "no accuracy lost". Returns the figure.
    """
    if not curves:
        raise ValueError("curves must hold at least one (sparsities, accuracies) pair, got none")
    if tolerance is not None and (baseline is None or not tolerance >= 0):
        raise ValueError(
            f"tolerance must be a number >= 0 used with a baseline, got tolerance={tolerance!r}, "
            f"baseline={baseline!r}"
        )
    for label, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curves[{label!r}] must be a pair (sparsities, accuracies)")
        if len(pair[0]) != len(pair[1]):
            raise ValueError(
                f"curves[{label!r}] must have as many sparsities as accuracies, "
                f"got {len(pair[0])} and {len(pair[1])}"
            )
    fig, ax = _axes(ax)
    markers = ["o", "s", "^", "D"]
    for i, (label, (xs, ys)) in enumerate(curves.items()):
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker=markers[i % 4], label=label)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", linestyle="--", linewidth=1, label="dense")
        if tolerance is not None:
            ax.axhspan(100 * (baseline - tolerance), 100 * baseline, color="gray", alpha=0.15)
    ax.set_xlabel("weights removed (%)")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def plot_input_map(values, title: str = "", cmap: str = "viridis", ax=None):
    """A 2-D array as an image with a colour bar, e.g. for each pixel of an 8×8 digit the
    fraction of first-layer weights that survive pruning (a sparsity map, chapter 3.2)."""
    import numpy as np

    shape = np.shape(values)
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"values must be a non-empty 2-D array (height, width), got shape {shape}")
    fig, ax = _axes(ax, figsize=(3.6, 3.2) if ax is None else None)
    image = ax.imshow(values, cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_sweep(
    xs: Sequence[float],
    means: Sequence[float],
    stds: Sequence[float],
    references: Mapping[str, float] | None = None,
    xlabel: str = "temperature $T$",
    ylabel: str = "validation accuracy",
    logx: bool = True,
    ax=None,
    label: str = "distilled student",
):
    """Mean ± std of a metric over seeds against a hyper-parameter (e.g. the distillation
    temperature, chapter 3.2; the speed-up of pruning against batch size, chapter 8), with
    horizontal reference lines (``label → value``); ``label`` names the measured curve."""
    if not len(xs) == len(means) == len(stds):
        raise ValueError(
            "xs, means and stds must have the same length, "
            f"got {len(xs)}, {len(means)} and {len(stds)}"
        )
    fig, ax = _axes(ax)
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle=["--", ":", "-."][i % 3], color=f"C{i + 1}", label=label)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [f"{x:g}" for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


# --- chapter 3.3: image grids and data curves -------------------------------------------------


def plot_image_grid(images, titles: Sequence[str] | None = None, ncols: int = 8, title=None):
    """Images in a grid, no axes (chapter 3.3: what augmentation does to a photo or a digit).

    ``images`` is a tensor ``(N, C, H, W)`` / ``(N, H, W)`` or a sequence of ``(C, H, W)``
    tensors with values in ``[0, 1]``; a single channel is drawn in gray (0 black, 1 white).
    ``titles`` (one per image) go above the images.
    """
    images = list(images)
    if not images:
        raise ValueError("images must hold at least one image")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image ({len(images)}), got {len(titles)}")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    use_style()
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(1.6 * ncols, (1.9 if titles else 1.6) * nrows + (0.4 if title else 0)),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        img = images[i].detach().cpu().float()
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
        ax.imshow(img.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_data_curves(
    x,
    series: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    *,
    std: Mapping[str, Sequence[float]] | None = None,
    logx: bool = False,
    logy: bool = False,
    vline: tuple[float, str] | None = None,
    title: str | None = None,
    ax=None,
):
    """Several curves on one axes (chapter 3.3: convergence, learning curves, cost vs density).

    ``x`` is one sequence shared by every curve, or a mapping ``label → x`` when the curves
    have different lengths. ``std`` (same labels) draws a ±1 std band; ``vline = (x0, label)``
    marks a position such as a measured crossover. Returns the figure.
    """
    if not series:
        raise ValueError("series must hold at least one curve, got none")
    for label, ys in series.items():
        if isinstance(x, Mapping) and label not in x:
            raise ValueError(f"x must have an entry for every curve of series, missing {label!r}")
        xs = x[label] if isinstance(x, Mapping) else x
        if len(xs) != len(ys):
            raise ValueError(
                f"curve {label!r}: x must have one value per y value, "
                f"got {len(xs)} x values but {len(ys)} y values"
            )
        if std is not None and label in std and len(std[label]) != len(ys):
            raise ValueError(
                f"std[{label!r}] must have one value per y value ({len(ys)}), "
                f"got {len(std[label])}"
            )
    fig, ax = _axes(ax)
    for label, ys in series.items():
        xs = x[label] if isinstance(x, Mapping) else x
        (line,) = ax.plot(xs, ys, "o-" if len(ys) <= 30 else "-", ms=4, label=label)
        if std is not None and label in std:
            lo = [m - s for m, s in zip(ys, std[label], strict=True)]
            hi = [m + s for m, s in zip(ys, std[label], strict=True)]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    if vline is not None:
        ax.axvline(vline[0], color="gray", ls=":", lw=1.5, label=vline[1])
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, xlabel, ylabel, title)


# --- chapter 3.4 and 7: compression tables and Pareto fronts ----------------------------------


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the Pareto-optimal points (chapters 3.4, 7): no other point has a cost
    ``<=`` and a score ``>=`` with at least one strict. Sorted by increasing cost."""
    if len(costs) != len(scores):
        raise ValueError(f"costs and scores must have the same length, got {len(costs)} and "
                         f"{len(scores)}")  # fmt: skip
    front = []
    for i, (c, s) in enumerate(zip(costs, scores, strict=True)):
        dominated = any(
            c2 <= c and s2 >= s and (c2 < c or s2 > s)
            for j, (c2, s2) in enumerate(zip(costs, scores, strict=True))
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: costs[i])


def plot_tradeoffs(
    rows: Sequence[Mapping[str, float | str]],
    costs: Sequence[str] = ("size_kb", "latency_ms"),
    score: str = "accuracy",
    label: str = "model",
    title: str | None = None,
):
    """Score against each cost (one panel per cost, e.g. accuracy vs size and vs measured
    latency), every point labelled, the Pareto front of each panel drawn as a step line
    (chapters 3.4 and 7). ``rows`` are dicts such as the rows of a compression table."""
    if not rows:
        raise ValueError("rows must hold at least one model, got none")
    if isinstance(costs, str) or not costs:
        raise ValueError(f"costs must be a non-empty sequence of column names, got {costs!r}")
    for key in (*costs, score, label):
        if key not in rows[0]:
            raise ValueError(f"rows must have the column {key!r}; found {sorted(rows[0])}")
    from matplotlib import ticker

    fig, axes = _axes(ncols=len(costs), figsize=(5.2 * len(costs), 3.8))
    axes = [axes] if len(costs) == 1 else list(axes)
    ys = [float(r[score]) for r in rows]
    for ax, cost in zip(axes, costs, strict=True):
        xs = [float(r[cost]) for r in rows]
        ax.scatter(xs, ys, s=40, zorder=3)
        for rank, i in enumerate(sorted(range(len(xs)), key=lambda i: xs[i])):
            offset = (6, 5) if rank % 2 == 0 else (6, -12)  # alternate to limit overlaps
            ax.annotate(str(rows[i][label]), (xs[i], ys[i]), textcoords="offset points",
                        xytext=offset, fontsize=8)  # fmt: skip
        front = pareto_front(xs, ys)
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="C1",
                alpha=0.7, label="Pareto front")  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(cost.replace("_", " "))
        ax.set_ylabel(score)
        ax.margins(x=0.15, y=0.12)
    axes[0].legend(loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
    ax=None,
):
    """Several curves on one axis, e.g. the loss of each step of distributed and
    single-process training (chapter 3.4); later curves are dashed so overlaps stay visible."""
    if not curves:
        raise ValueError("curves must hold at least one curve, got none")
    fig, ax = _axes(ax)
    styles = ["-", "--", ":", "-."]
    for i, (name, values) in enumerate(curves.items()):
        ax.plot(range(1, len(values) + 1), values, styles[i % len(styles)], label=name,
                linewidth=2.0 if i == 0 else 1.5)  # fmt: skip
    return _finish(fig, ax, xlabel, ylabel, title)
