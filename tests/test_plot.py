"""course_lib.plot: every helper returns a Figure that shows what it was given (every chapter).

Plot arguments are not validated beyond what matplotlib does, so there are no bad-input cases.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_lib import optim, plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_curves_draws_each_curve_against_its_x():
    fig = plot.plot_curves({"a": [3.0, 2.0, 1.0], "b": [5.0, 4.0]}, {"a": [1, 2, 3], "b": [1, 2]},
                           xlabel="x", ylabel="y", title="t")  # fmt: skip
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.lines) == 2
    assert list(ax.lines[0].get_ydata()) == [3.0, 2.0, 1.0]
    assert list(ax.lines[1].get_xdata()) == [1.0, 2.0]
    assert ax.lines[0].get_linestyle() != ax.lines[1].get_linestyle()  # overlaps stay visible
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("x", "y", "t")
    default = plot.plot_curves({"loss": [1.0, 0.5, 0.25]}).axes[0].lines[0]
    assert list(default.get_xdata()) == [1, 2, 3]


def test_plot_curves_mean_and_std_of_several_runs():
    runs = [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]
    ax = plot.plot_curves({"adam": runs}, logy=True).axes[0]
    assert list(ax.lines[0].get_ydata()) == [2.0, 3.0, 4.0]
    assert ax.lines[0].get_label() == "adam (n=2)" and len(ax.collections) == 1  # the band
    assert ax.get_yscale() == "log"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(1.0) and band.max() == pytest.approx(5.0)


def test_plot_curves_references_bands_markers_and_ticks():
    fig = plot.plot_curves(
        {"measured": [0.5, 0.6, 0.7], "law": [0.4, 0.6, 0.8]},
        [1, 2, 4],
        std={"measured": [0.1, 0.1, 0.1]},
        styles={"measured": "o"},
        hlines={"teacher": 0.9},
        band=(0.8, 0.9),
        vline=(2.0, "crossover"),
        logx=True,
        xticks=[1, 2, 4],
    )
    ax = fig.axes[0]
    assert ax.lines[0].get_linestyle() == "None" and ax.lines[0].get_marker() == "o"
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["measured", "law", "teacher", "crossover"]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ax.get_xscale() == "log" and ticks == ["1", "2", "4"]
    assert len(ax.patches) == 1  # the shaded band


def test_plot_history_draws_train_and_val():
    history = {
        "epoch": [1, 2],
        "train_loss": [1.0, 0.5],
        "train_accuracy": [0.5, 0.7],
        "val_loss": [1.1, 0.6],
        "val_accuracy": [0.4, 0.6],
    }
    fig = plot.plot_history({"a": history, "b": history})
    assert isinstance(fig, Figure) and len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    assert len(plot.plot_history(history, metrics=("loss",)).axes) == 1


def test_cost_scaling_and_concept_map_return_figures():
    rows = [{"width": w, "parameters": 10 * w, "flops": 100 * w, "latency_ms": 0.1 * w}
            for w in (1, 2, 4)]  # fmt: skip
    fig = plot.plot_cost_scaling(rows, "width")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the latency on a twin axis
    assert list(fig.axes[0].lines[0].get_ydata()) == [10, 20, 40]
    _, ax = plt.subplots()
    assert plot.plot_cost_scaling(rows, "width", ax=ax) is ax.figure
    assert isinstance(plot.plot_concept_map(), Figure)


def test_trajectories_and_input_map_return_figures():
    fig = plot.plot_trajectories(optim.quadratic, {"gd": np.array([[1.0, 1.0], [0.5, 0.2]])},
                                 xlim=(-2, 2), ylim=(-2, 2), minimum=(0, 0))  # fmt: skip
    assert isinstance(fig, Figure) and fig.axes[0].get_legend_handles_labels()[1] == ["gd"]
    fig = plot.plot_input_map(np.random.default_rng(0).random((8, 8)), title="kept")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the map and its colour bar


def test_image_grid_draws_every_image_with_its_title():
    fig = plot.plot_image_grid(torch.rand(5, 1, 8, 8), titles=list("abcde"), ncols=3)
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.images]) == 5
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")


def test_tradeoffs_label_every_point_and_draw_the_front():
    rows = [{"model": "a", "size_kb": 10.0, "latency_ms": 1.0, "accuracy": 0.9},
            {"model": "b", "size_kb": 2.0, "latency_ms": 0.5, "accuracy": 0.8},
            {"model": "c", "size_kb": 20.0, "latency_ms": 2.0, "accuracy": 0.85}]  # fmt: skip
    fig = plot.plot_tradeoffs(rows)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].texts] == ["b", "a", "c"]
    front = fig.axes[0].lines[0]
    assert list(front.get_xdata()) == [2.0, 10.0]  # c is dominated by a
