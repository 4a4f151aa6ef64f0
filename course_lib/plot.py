"""One plotting style for the whole book (every chapter). The only module importing matplotlib.

Every helper returns a ``matplotlib.figure.Figure`` and draws on a new figure, or on ``ax``
where it takes one (to place several plots side by side). Arguments are not checked beyond
what matplotlib checks: a plot shows what it is given.

- :func:`plot_curves`: the line plot of every chapter (curves, mean ± std over seeds, bands,
  reference lines, log axes);
- :func:`plot_history`: training curves from :func:`course_lib.train.fit` (chapters 1, 2, 4);
- :func:`plot_cost_scaling`, :func:`plot_concept_map` (chapters 1 and 2);
- :func:`plot_trajectories`: optimizer paths on contour lines (chapter 3.1);
- :func:`plot_input_map`, :func:`plot_image_grid`: sparsity maps and images (chapters 3.2, 3.3);
- :func:`plot_tradeoffs`: accuracy against size and latency with Pareto fronts (chapters 3.4, 7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import ticker
from matplotlib.figure import Figure

from course_lib.compress import pareto_front

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


def _finish(fig, ax, xlabel: str, ylabel: str, title: str | None, legend: str | None = "best"):
    """Label the axes, add the legend (at ``legend``, unless None) and the title (if any),
    tighten the layout; return the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend is not None:
        ax.legend(loc=legend)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    x: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    *,
    std: Mapping[str, Sequence[float]] | None = None,
    styles: Mapping[str, str] | None = None,
    xlabel: str = "step",
    ylabel: str = "",
    logx: bool = False,
    logy: bool = False,
    xticks: Sequence[float] | None = None,
    hlines: Mapping[str, float] | None = None,
    band: tuple[float, float] | None = None,
    vline: tuple[float, str] | None = None,
    legend: str = "best",
    title: str | None = None,
    ax=None,
) -> Figure:
    """Several curves on one axes: the line plot of every chapter (loss per step, learning
    curves, a metric against a hyper-parameter, measured points against a law).

    - ``curves`` maps a label to its y values. A value that is a list of equally long curves
      (one per seed) is drawn as their mean with a ±1 std band, labelled with the number of
      runs (chapter 3.1).
    - ``x``: one sequence shared by every curve, a mapping label → x for curves of different
      lengths, or ``None`` for 1, 2, …, n.
    - ``std`` (label → values) draws a ±1 std band around that curve.
    - ``styles`` (label → matplotlib format, e.g. ``"o"`` for points only) overrides the
      default, which cycles the line styles ``-``, ``--``, ``:``, ``-.`` so that curves that
      coincide stay visible, with markers on curves of at most 30 points.
    - ``hlines`` (label → y) draws reference levels, ``band = (low, high)`` shades a horizontal
      band (e.g. "within one point of the baseline"), ``vline = (x0, label)`` marks a position
      such as a measured crossover; ``xticks`` puts ticks labelled with their values at those
      x positions (handy on a log axis); ``legend`` is the legend's ``loc``.
    """
    fig, ax = _axes(ax)
    line_styles = ["-", "--", ":", "-."]
    for i, (label, ys) in enumerate(curves.items()):
        values, spread, shown = np.asarray(ys, dtype=float), None, label
        if values.ndim == 2:  # several runs: mean ± std over them
            values, spread = values.mean(axis=0), values.std(axis=0)
            shown = f"{label} (n={len(ys)})"
        elif std is not None and label in std:
            spread = np.asarray(std[label], dtype=float)
        if isinstance(x, Mapping):
            xs = np.asarray(x[label], dtype=float)
        else:
            xs = np.arange(1, len(values) + 1) if x is None else np.asarray(x, dtype=float)
        style = (styles or {}).get(label)
        if style is None:
            style = line_styles[i % len(line_styles)] + ("o" if len(values) <= 30 else "")
        (line,) = ax.plot(xs, values, style, ms=4, label=shown)
        if spread is not None:
            ax.fill_between(xs, values - spread, values + spread, color=line.get_color(),
                            alpha=0.2)  # fmt: skip
    for j, (label, level) in enumerate((hlines or {}).items()):
        ax.axhline(level, linestyle=["--", ":", "-."][j % 3], color=f"C{len(curves) + j}",
                   linewidth=1.2, label=label)  # fmt: skip
    if band is not None:
        ax.axhspan(band[0], band[1], color="gray", alpha=0.15)
    if vline is not None:
        ax.axvline(vline[0], color="gray", ls=":", lw=1.5, label=vline[1])
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if xticks is not None:
        ax.set_xticks(list(xticks), [f"{v:g}" for v in xticks])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    return _finish(fig, ax, xlabel, ylabel, title, legend)


def plot_history(
    histories: Mapping[str, Mapping[str, Sequence[float]]] | Mapping[str, Sequence[float]],
    metrics: Sequence[str] = ("loss", "accuracy"),
    title: str | None = None,
) -> Figure:
    """Training curves: one panel per metric, train dashed and validation solid.

    ``histories`` is one history from :func:`course_lib.train.fit`, or a mapping
    ``label → history`` to compare several runs on the same axes.
    """
    if "train_loss" in histories:  # a single history
        histories = {"": histories}
    fig, axes = _axes(ncols=len(metrics), figsize=(5.0 * len(metrics), 3.6))
    axes = [axes] if len(metrics) == 1 else list(axes)
    for i, (label, history) in enumerate(histories.items()):
        color = f"C{i % 10}"
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
) -> Figure:
    """Parameters, FLOPs (left, log scale) and measured latency (right) against ``x``.

    ``rows`` are dicts with keys ``x``, ``"parameters"``, ``"flops"`` and ``"latency_ms"``
    (chapter 1: how the cost of a network grows with its width and depth).
    """
    fig, ax = _axes(ax)
    xs = [r[x] for r in rows]
    ax.plot(xs, [r["parameters"] for r in rows], "o-", label="parameters")
    ax.plot(xs, [r["flops"] for r in rows], "s-", label="FLOPs per batch")
    ax.set_yscale("log")
    right = ax.twinx()
    right.plot(xs, [r["latency_ms"] for r in rows], "^--", color="C3", label="latency (ms)")
    right.set_ylabel("median latency (ms)", color="C3")
    right.grid(False)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left")
    return _finish(fig, ax, x, "count (log scale)", title, legend=None)


def plot_concept_map(ax=None) -> Figure:
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
    return fig


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
) -> Figure:
    """Paths of optimizers drawn over the contour lines of a 2-D function (chapter 3.1).

    ``f(x, y)`` is a torch function (e.g. :func:`course_lib.optim.quadratic`); each value of
    ``trajectories`` is a :class:`course_lib.optim.Trajectory` or an ``(n, 2)`` array of points.
    Contour levels are spaced logarithmically, so both the steep walls and the flat floor of
    a valley show. ``minimum`` marks the optimum with a star.
    """
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
    ax.grid(False)
    ax.legend(loc="best", fontsize=8)
    return _finish(fig, ax, "x", "y", title, legend=None)


# --- chapters 3.2 and 3.3: sparsity maps and image grids ---------------------------------------


def plot_input_map(values, title: str = "", cmap: str = "viridis", ax=None) -> Figure:
    """A 2-D array as an image with a colour bar, e.g. for each pixel of an 8×8 digit the
    fraction of first-layer weights that survive pruning (a sparsity map, chapter 3.2)."""
    fig, ax = _axes(ax, figsize=(3.6, 3.2) if ax is None else None)
    image = ax.imshow(values, cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_image_grid(
    images, titles: Sequence[str] | None = None, ncols: int = 8, title=None
) -> Figure:
    """Images in a grid, no axes (chapter 3.3: what augmentation does to a photo or a digit).

    ``images`` is a tensor ``(N, C, H, W)`` / ``(N, H, W)`` or a sequence of ``(C, H, W)``
    tensors with values in ``[0, 1]``; a single channel is drawn in gray (0 black, 1 white).
    ``titles`` (one per image) go above the images.
    """
    images = list(images)
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


# --- chapters 3.4 and 7: accuracy against cost --------------------------------------------


def plot_tradeoffs(
    rows: Sequence[Mapping[str, float | str]],
    costs: Sequence[str] = ("size_kb", "latency_ms"),
    score: str = "accuracy",
    label: str = "model",
    title: str | None = None,
) -> Figure:
    """Score against each cost (one panel per cost, e.g. accuracy vs size and vs measured
    latency), every point labelled, the Pareto front of each panel drawn as a step line
    (chapters 3.4 and 7; the front is :func:`course_lib.compress.pareto_front`). ``rows`` are
    dicts such as the rows of a compression table."""
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
