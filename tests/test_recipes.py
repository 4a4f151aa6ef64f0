"""Tests of course_lib.recipes against sklearn, torch and hand formulas (chapters 4, 5, 7)."""

from __future__ import annotations

import io
import statistics

import numpy as np
import pytest
import sklearn.datasets
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib import recipes
from course_lib.prune import magnitude_prune


@pytest.mark.parametrize(
    ("name", "loader", "n_features"),
    [("diabetes", "load_diabetes", 10), ("breast_cancer", "load_breast_cancer", 30),
     ("wine", "load_wine", 13)],
)
def test_load_sklearn_table_matches_sklearn(name, loader, n_features):
    bunch = getattr(sklearn.datasets, loader)()
    splits = recipes.load_sklearn_table(name, seed=3)
    X = torch.cat([s.X for s in splits])
    y = torch.cat([s.y for s in splits])
    assert X.shape == (len(bunch.target), n_features)
    assert X.dtype == torch.float32
    # the parts are a partition of the rows of the sklearn data, features unscaled
    rows = {tuple(np.round(r, 4)) for r in bunch.data.astype(np.float32)}
    assert {tuple(np.round(r, 4)) for r in X.numpy()} == rows
    if name == "diabetes":
        assert y.dtype == torch.float32 and y.shape == (len(bunch.target), 1)
        assert sorted(y.flatten().tolist()) == pytest.approx(sorted(bunch.target.tolist()))
    else:
        assert y.dtype == torch.int64
        assert torch.bincount(y).tolist() == np.bincount(bunch.target).tolist()
        # stratified: every class is in the test part
        assert set(splits.test.y.tolist()) == set(bunch.target.tolist())
    assert abs(len(splits.test.y) - 0.2 * len(bunch.target)) <= 1


def test_load_sklearn_table_rejects_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        recipes.load_sklearn_table("iris")


def test_augmented_loader_transforms_inputs_only():
    X, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    wrapped = recipes.AugmentedLoader(loader, lambda x: -x)
    batches = list(wrapped)
    assert len(wrapped) == 2 == len(batches)
    assert torch.equal(torch.cat([b[0] for b in batches]), -X)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)


def test_augmented_loader_checks_arguments():
    with pytest.raises(TypeError, match="transform must be callable"):
        recipes.AugmentedLoader([], 3)
    with pytest.raises(TypeError, match="loader must be an iterable"):
        recipes.AugmentedLoader(5, lambda x: x)


def test_random_time_shift_is_a_per_row_torch_roll():
    signals = torch.randn(16, 3, 20)
    generator = torch.Generator().manual_seed(0)
    out = recipes.random_time_shift(signals, max_shift=5, generator=generator)
    # replay the same draws: the shifts are the generator's first randint call
    shifts = torch.randint(-5, 6, (16,), generator=torch.Generator().manual_seed(0))
    for i in range(16):
        assert torch.equal(out[i], torch.roll(signals[i], int(shifts[i]), dims=-1))
    assert shifts.abs().max() <= 5 and len(set(shifts.tolist())) > 1


def test_random_time_shift_2d_and_zero_shift():
    signals = torch.randn(4, 10)
    assert torch.equal(recipes.random_time_shift(signals, 0), signals)
    out = recipes.random_time_shift(signals, 3, torch.Generator().manual_seed(1))
    assert out.shape == signals.shape
    # a circular shift only permutes each row
    assert torch.allclose(out.sort(dim=1).values, signals.sort(dim=1).values)


@pytest.mark.parametrize("bad", [-1, 10, 2.5])
def test_random_time_shift_rejects_bad_shift(bad):
    with pytest.raises((ValueError, TypeError), match="max_shift"):
        recipes.random_time_shift(torch.zeros(2, 10), bad)


def test_random_time_shift_rejects_bad_shape():
    with pytest.raises(ValueError, match="signals must have shape"):
        recipes.random_time_shift(torch.zeros(10), 1)


def test_profile_model_against_direct_measurements():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    X, y = torch.randn(50, 8), torch.randint(0, 3, (50,))
    loader = DataLoader(TensorDataset(X, y), batch_size=20)
    row = recipes.profile_model(model, X, loader, repeats=5)
    with torch.no_grad():
        expected_accuracy = (model(X).argmax(1) == y).float().mean().item()
    assert row["accuracy"] == pytest.approx(expected_accuracy)
    assert row["parameters"] == 8 * 16 + 16 + 16 * 3 + 3
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert row["size_kb"] == pytest.approx(buffer.getbuffer().nbytes / 1024)
    assert row["latency_ms"] > 0
    assert row["nonzero"] == row["parameters"]
    magnitude_prune(model, 0.5)
    pruned = recipes.profile_model(model, X, None, repeats=3)
    weights = 8 * 16 + 16 * 3
    assert pruned["nonzero"] == row["parameters"] - weights // 2
    assert np.isnan(pruned["accuracy"])


def test_profile_model_checks_arguments():
    with pytest.raises(TypeError, match="model must be"):
        recipes.profile_model("net", torch.zeros(1))
    with pytest.raises(ValueError, match="threads"):
        recipes.profile_model(nn.Linear(2, 2), torch.zeros(1, 2), threads=0)


def test_over_seeds_mean_and_sample_std():
    stats = recipes.over_seeds(lambda s: s * 2.0, [1, 2, 3, 6])
    assert stats.values == [2.0, 4.0, 6.0, 12.0]
    assert stats.mean == pytest.approx(6.0)
    assert stats.std == pytest.approx(statistics.stdev([2.0, 4.0, 6.0, 12.0]))
    assert stats.std == pytest.approx(np.std([2, 4, 6, 12], ddof=1))
    assert recipes.over_seeds(lambda s: 1.5, [0]).std == 0.0
    assert str(recipes.over_seeds(lambda s: 0.5, [0, 1])) == "0.500 ± 0.000"


def test_over_seeds_checks_arguments():
    with pytest.raises(ValueError, match="seeds"):
        recipes.over_seeds(lambda s: 1.0, [])
    with pytest.raises(TypeError, match="experiment"):
        recipes.over_seeds(3, [0])
    with pytest.raises(ValueError, match="NaN"):
        recipes.over_seeds(lambda s: float("nan"), [0])


def _regression_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g)
    y = X @ torch.randn(5, 1, generator=g) + 0.5 * torch.randn(64, 1, generator=g)
    train = DataLoader(TensorDataset(X[:40], y[:40]), batch_size=8)
    val = DataLoader(TensorDataset(X[40:], y[40:]), batch_size=24)
    return train, val


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 1))


def test_fit_early_stopping_restores_the_best_epoch_of_a_plain_run():
    from course_lib.train import fit

    train_loader, val_loader = _regression_problem()
    reference = _net()
    opt = torch.optim.Adam(reference.parameters(), lr=0.05)
    states, val_losses = [], []
    for _ in range(30):  # a plain run, one epoch at a time, every state kept
        val_losses += fit(reference, train_loader, val_loader, opt, nn.MSELoss(), 1,
                          "cpu")["val_loss"]
        states.append({k: v.clone() for k, v in reference.state_dict().items()})
    expected_best = int(np.argmin(val_losses)) + 1
    assert expected_best < 30  # lr 0.05 on 40 points overfits: the last epoch is not the best

    model = _net()
    history, best = recipes.fit_early_stopping(
        model, train_loader, val_loader, torch.optim.Adam(model.parameters(), lr=0.05),
        nn.MSELoss(), 30, device="cpu")
    assert best == expected_best
    assert history["epoch"] == list(range(1, 31))
    assert history["val_loss"] == pytest.approx(val_losses)
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[best - 1][k])


def test_fit_early_stopping_patience_stops_early():
    train_loader, val_loader = _regression_problem()
    model = _net()
    history, best = recipes.fit_early_stopping(
        model, train_loader, val_loader, torch.optim.Adam(model.parameters(), lr=0.05),
        nn.MSELoss(), 200, patience=3, device="cpu")
    assert len(history["epoch"]) == best + 3 < 200
    assert min(history["val_loss"]) == history["val_loss"][best - 1]


def test_fit_early_stopping_checks_arguments():
    train_loader, val_loader = _regression_problem()
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="max_epochs"):
        recipes.fit_early_stopping(model, train_loader, val_loader, opt, nn.MSELoss(), 0)
    with pytest.raises(ValueError, match="patience"):
        recipes.fit_early_stopping(model, train_loader, val_loader, opt, nn.MSELoss(), 3,
                                   patience=0)
    with pytest.raises(ValueError, match="val_loader"):
        recipes.fit_early_stopping(model, train_loader, None, opt, nn.MSELoss(), 3)
