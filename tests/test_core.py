"""Unit tests of the foundation: seeding, devices, digits data, models, training loop, plots."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import course_lib
from course_lib import compress, data, models, plot, train
from course_lib.source import source_markdown


# --- seed ------------------------------------------------------------------------------------
def test_seed_everything_makes_torch_and_numpy_repeat():
    course_lib.seed_everything(123)
    a = torch.randn(5), np.random.rand(3)
    course_lib.seed_everything(123)
    b = torch.randn(5), np.random.rand(3)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError)])
def test_seed_everything_rejects_bad_seed(bad, error):
    with pytest.raises(error, match="seed"):
        course_lib.seed_everything(bad)


# --- device ----------------------------------------------------------------------------------
def test_select_device_prefers_best_available(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert course_lib.select_device().type == expected


def test_select_device_override_and_env(monkeypatch):
    assert course_lib.select_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert course_lib.select_device() == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "nonsense"])
def test_select_device_rejects_unknown(bad):
    with pytest.raises(ValueError, match="prefer"):
        course_lib.select_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_select_device_refuses_missing_cuda():
    with pytest.raises(ValueError, match="not available"):
        course_lib.select_device("cuda")


# --- data ------------------------------------------------------------------------------------
def test_digits_tensors_shapes_and_range():
    X, y = data.load_digits_tensors()
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert X.min() >= 0 and X.max() <= 1
    Xi, _ = data.load_digits_tensors(as_images=True)
    assert Xi.shape == (1797, 1, 8, 8)


def test_split_is_stratified_disjoint_and_complete():
    splits = data.load_digits_split(val_size=0.2, test_size=0.2, seed=0)
    sizes = [len(s.y) for s in splits]
    assert sum(sizes) == 1797
    all_x = torch.cat([s.X for s in splits])
    assert (
        torch.unique(all_x, dim=0).shape[0]
        == torch.unique(data.load_digits_tensors()[0], dim=0).shape[0]
    )
    full = torch.bincount(data.load_digits_tensors()[1], minlength=10).float() / 1797
    for part in splits:
        share = torch.bincount(part.y, minlength=10).float() / len(part.y)
        assert (share - full).abs().max() < 0.01  # stratified: class shares kept within 1 point


def test_split_is_reproducible_and_seed_dependent():
    a = data.load_digits_split(seed=1).train.y
    b = data.load_digits_split(seed=1).train.y
    c = data.load_digits_split(seed=2).train.y
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "kwargs", [{"val_size": 0}, {"test_size": 1.2}, {"val_size": 0.6, "test_size": 0.5}]
)
def test_split_rejects_bad_fractions(kwargs):
    with pytest.raises(ValueError):
        data.load_digits_split(**kwargs)


def test_loaders_shuffle_reproducibly():
    splits = data.load_digits_split()
    first = [next(iter(data.make_loaders(splits, batch_size=32, seed=5)[0]))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loaders(splits, batch_size=0)


# --- models ----------------------------------------------------------------------------------
def test_net_is_the_documents_network():
    net = models.Net()
    assert (net.fc1.in_features, net.fc1.out_features, net.fc2.out_features) == (10, 20, 1)
    assert net(torch.zeros(4, 10)).shape == (4, 1)


def test_mlp_is_lenet_300_100():
    mlp = models.MLP()
    widths = [m.out_features for m in mlp if isinstance(m, nn.Linear)]
    assert widths == [300, 100, 10]
    assert compress.count_parameters(mlp) == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert mlp(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_small_cnn_shapes_and_validation():
    assert models.SmallCNN()(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert models.SmallCNN(in_channels=3, image_size=32)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="image_size"):
        models.SmallCNN(image_size=10)
    with pytest.raises(ValueError, match="hidden"):
        models.MLP(hidden=(0,))
    with pytest.raises(TypeError, match="num_classes"):
        models.MLP(num_classes=2.5)


# --- train -----------------------------------------------------------------------------------
def _toy_loaders(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    ds = TensorDataset(X, y)
    return DataLoader(ds, batch_size=32, shuffle=True, generator=g), DataLoader(ds, batch_size=64)


def test_fit_learns_and_records_history():
    torch.manual_seed(0)
    train_loader, val_loader = _toy_loaders()
    model = models.MLP(in_features=2, hidden=(16,), num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    history = train.fit(
        model, train_loader, val_loader, opt, nn.CrossEntropyLoss(), epochs=5, device="cpu"
    )
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.9


def test_evaluate_matches_manual_computation():
    torch.manual_seed(0)
    _, loader = _toy_loaders()
    model = nn.Linear(2, 2)
    X, y = loader.dataset.tensors
    out = model(X)
    expected_loss = nn.functional.cross_entropy(out, y).item()
    expected_acc = (out.argmax(1) == y).float().mean().item()
    result = train.evaluate(model, loader, nn.CrossEntropyLoss(), "cpu")
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["accuracy"] == pytest.approx(expected_acc)


def test_fit_regression_reports_nan_accuracy():
    X = torch.randn(64, 10)
    loader = DataLoader(TensorDataset(X, X.sum(1, keepdim=True)), batch_size=16)
    model = models.Net()
    history = train.fit(
        model, loader, loader, torch.optim.Adam(model.parameters()), nn.MSELoss(), 2, "cpu"
    )
    assert math.isnan(history["val_accuracy"][0]) and history["val_loss"][0] > 0


def test_fit_validates_arguments():
    loader, _ = _toy_loaders()
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, loader, None, opt, nn.CrossEntropyLoss(), 0)
    with pytest.raises(TypeError, match="optimizer"):
        train.fit(model, loader, None, "adam", nn.CrossEntropyLoss(), 1)
    with pytest.raises(TypeError, match="model"):
        train.fit("model", loader, None, opt, nn.CrossEntropyLoss(), 1)


def test_progress_is_quiet_when_not_interactive(monkeypatch):
    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    assert train.default_progress() is False  # pytest captures stderr: not a terminal
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    assert train.default_progress() is True


def test_checkpoint_round_trip(tmp_path):
    model = models.MLP(hidden=(8,))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 64)).sum().backward()
    opt.step()
    path = train.save_checkpoint(tmp_path / "ck.pt", model, opt, epoch=3)
    other = models.MLP(hidden=(8,))
    other_opt = torch.optim.Adam(other.parameters())
    extra = train.load_checkpoint(path, other, other_opt)
    assert extra == {"epoch": 3}
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert not (tmp_path / "ck.pt.tmp").exists()


# --- compress (chapter 1 part) ----------------------------------------------------------------
def test_flops_of_linear_is_two_m_n_per_example():
    model = nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 10))
    assert compress.flops(model, torch.zeros(8, 64)) == 2 * 8 * (64 * 300 + 300 * 10)


def test_measure_latency_is_positive_and_validates():
    lat = compress.measure_latency(nn.Linear(8, 8), torch.zeros(1, 8), warmup=1, repeats=5)
    assert 0 < lat.q1 <= lat.median <= lat.q3
    with pytest.raises(ValueError, match="repeats"):
        compress.measure_latency(nn.Linear(8, 8), torch.zeros(1, 8), repeats=1)


# --- plot and source -----------------------------------------------------------------------------
def test_plot_history_draws_train_and_val():
    history = {
        "epoch": [1, 2],
        "train_loss": [1.0, 0.5],
        "train_accuracy": [0.5, 0.7],
        "val_loss": [1.1, 0.6],
        "val_accuracy": [0.4, 0.6],
    }
    fig = plot.plot_history({"a": history, "b": history})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    with pytest.raises(ValueError, match="metrics"):
        plot.plot_history(history, metrics=("f1",))


def test_source_markdown_shows_the_real_code():
    text = source_markdown(course_lib.seed_everything)
    assert "course_lib/seed.py" in text and "torch.manual_seed(seed)" in text


def test_batch_loader_yields_whole_batches_in_order_or_shuffled():
    split = data.Split(torch.arange(10.0)[:, None], torch.arange(10))
    ordered = [y.tolist() for _, y in data.batch_loader(split, 4, shuffle=False)]
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = [y for _, y in data.batch_loader(split, 4, seed=3)]
    again = [y for _, y in data.batch_loader(split, 4, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again))
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="eval_batch_size"):
        data.make_loaders(data.load_digits_split(), eval_batch_size=0)
