"""course_lib.scaling: standardization and min-max scaling against scikit-learn (chapter 3.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from course_lib.scaling import MinMaxScale, Standardize


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    X = np.hstack([X, np.full((len(X), 1), 3.5)])  # a constant feature
    return X, y


# --- scalers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (Standardize, StandardScaler),
        (MinMaxScale, MinMaxScaler),
        (lambda: MinMaxScale((-1.0, 2.0)), lambda: MinMaxScaler((-1.0, 2.0))),
    ],
)
def test_scalers_agree_with_sklearn_fitted_on_train_only(wine, ours, theirs):
    X, _ = wine
    train, test = X[:120], X[120:]
    ref = theirs().fit(train)
    scaler = ours().fit(torch.tensor(train, dtype=torch.float64))
    for part in (train, test):
        got = scaler.transform(torch.tensor(part, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got, ref.transform(part), rtol=1e-10, atol=1e-10)
        assert np.isfinite(got).all()
    back = scaler.inverse_transform(torch.tensor(ref.transform(test), dtype=torch.float64))
    np.testing.assert_allclose(back.numpy(), test, rtol=1e-10, atol=1e-8)


def test_float32_input_stays_float32_and_close_to_sklearn(wine):
    X, _ = wine
    got = Standardize().fit_transform(torch.tensor(X, dtype=torch.float32))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), StandardScaler().fit_transform(X), atol=1e-5)


def test_constant_feature_maps_to_zero_or_a_without_nan():
    X = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    z = Standardize().fit_transform(X)
    assert torch.equal(z[:, 1], torch.zeros(3))
    m = MinMaxScale((-1.0, 1.0)).fit_transform(X)
    assert torch.equal(m[:, 1], torch.full((3,), -1.0))
    assert torch.allclose(m[:, 0], torch.tensor([-1.0, 0.0, 1.0]))


def test_standardize_by_hand_formula_on_images():
    X = torch.rand(50, 1, 4, 4, dtype=torch.float64)
    z = Standardize().fit_transform(X)
    mu, sigma = X.mean(0), X.std(0, correction=0)
    assert torch.allclose(z, (X - mu) / sigma)
    assert torch.allclose(z.mean(0), torch.zeros(1, 4, 4, dtype=torch.float64), atol=1e-12)


def test_transform_before_fit_and_wrong_features_raise():
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardize().transform(torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match="not fitted"):
        MinMaxScale().inverse_transform(torch.zeros(3, 2))
    scaler = Standardize().fit(torch.rand(10, 4))
    with pytest.raises(ValueError, match="feature shape"):
        scaler.transform(torch.rand(10, 5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        Standardize().fit(np.zeros((3, 2)))


def test_minmax_test_values_outside_training_range_leave_the_interval():
    scaler = MinMaxScale().fit(torch.tensor([[0.0], [10.0]]))
    assert torch.allclose(
        scaler.transform(torch.tensor([[-5.0], [20.0]])), torch.tensor([[-0.5], [2.0]])
    )
