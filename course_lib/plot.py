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


def plot_history(
    histories: Mapping[str, Mapping[str, Sequence[float]]] | Mapping[str, Sequence[float]],
    metrics: Sequence[str] = ("loss", "accuracy"),
    title: str | None = None,
):
    """Training curves: one panel per metric, train dashed and validation solid.

    ``histories`` is one history from :func:`course_lib.train.fit`, or a mapping
    ``label → history`` to compare several runs on the same axes. Returns the figure.
    """
    if "train_loss" in histories:  # a single history
        histories = {"": histories}
    if not metrics:
        raise ValueError("metrics must name at least one of 'loss', 'accuracy'")
    for metric in metrics:
        if metric not in ("loss", "accuracy"):
            raise ValueError(f"metrics must be 'loss' or 'accuracy', got {metric!r}")
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
        raise ValueError("rows must hold at least one measurement")
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


# --- chapter 3.2: sparsity maps and pruning curves --------------------------------------------


# --- chapter 3.3: image grids and data curves -------------------------------------------------


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
        raise ValueError("rows must hold at least one model")
    for key in (*costs, score, label):
        if key not in rows[0]:
            raise ValueError(f"rows must have the column {key!r}; found {sorted(rows[0])}")
    fig, axes = _axes(ncols=len(costs), figsize=(5.2 * len(costs), 3.8))
    axes = [axes] if len(costs) == 1 else list(axes)
    ys = [float(r[score]) for r in rows]
    for ax, cost in zip(axes, costs, strict=True):
        xs = [float(r[cost]) for r in rows]
        ax.scatter(xs, ys, s=40, zorder=3)
        for x, y, r in zip(xs, ys, rows, strict=True):
            ax.annotate(str(r[label]), (x, y), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)  # fmt: skip
        front = pareto_front(xs, ys)
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="C1",
                alpha=0.7, label="Pareto front")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(cost.replace("_", " "))
        ax.set_ylabel(score)
    axes[0].legend(loc="lower right")
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
        raise ValueError("curves must hold at least one curve")
    fig, ax = _axes(ax)
    styles = ["-", "--", ":", "-."]
    for i, (name, values) in enumerate(curves.items()):
        ax.plot(range(1, len(values) + 1), values, styles[i % len(styles)], label=name,
                linewidth=2.0 if i == 0 else 1.5)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
