"""Unit tests of the foundation: seeding, devices, models, training loop, latency, source."""

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
from course_lib import compress, models, train
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no .ck.pt.*.tmp left


# --- compress (chapter 1 part) ----------------------------------------------------------------
def test_flops_of_linear_is_two_m_n_per_example():
    model = nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 10))
    assert compress.flops(model, torch.zeros(8, 64)) == 2 * 8 * (64 * 300 + 300 * 10)


def test_measure_latency_is_positive_and_validates():
    lat = compress.measure_latency(nn.Linear(8, 8), torch.zeros(1, 8), warmup=1, repeats=5)
    assert 0 < lat.q1 <= lat.median <= lat.q3
    with pytest.raises(ValueError, match="repeats"):
        compress.measure_latency(nn.Linear(8, 8), torch.zeros(1, 8), repeats=1)


# --- source -----------------------------------------------------------------------------
def test_source_markdown_shows_the_real_code():
    text = source_markdown(course_lib.seed_everything)
    assert "course_lib/seed.py" in text and "torch.manual_seed(seed)" in text
