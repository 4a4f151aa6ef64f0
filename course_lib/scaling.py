"""Feature scaling fitted on the training data only (chapter 3.3; used in chapters 4, 5, 7):
standardization (:class:`Standardize`, z-scores) and min-max normalization
(:class:`MinMaxScale`), with scikit-learn's ``fit`` / ``transform`` conventions and its rules
for constant features.
"""

from __future__ import annotations

import torch

from course_lib import _checks


def _check_tensor(name: str, X) -> torch.Tensor:
    """A tensor of samples along axis 0 and features along the others."""
    _checks.tensor(name, X)
    if X.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_samples, n_features, ...), got {tuple(X.shape)}"
        )
    if X.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(X.shape)}")
    return X


def _nonzero_scale(scale: torch.Tensor) -> torch.Tensor:
    """Replace (near-)zero scales by 1 so that constant features map to a constant, never NaN."""
    tiny = 10 * torch.finfo(scale.dtype).eps
    return torch.where(scale < tiny, torch.ones_like(scale), scale)


class _Scaler:
    """Shared ``fit`` / ``transform`` plumbing: statistics per feature over the sample axis 0,
    computed in float64 and applied as ``X * scale_ + shift_``."""

    scale_: torch.Tensor | None = None
    shift_: torch.Tensor | None = None

    def __init__(self) -> None:
        self.scale_ = None
        self.shift_ = None
        self.n_features_shape_: tuple[int, ...] | None = None

    def _fit_statistics(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fit(self, X: torch.Tensor):
        """Learn the per-feature statistics from ``X`` (the *training* data only). Returns self."""
        X = _check_tensor("X", X)
        self.scale_, self.shift_ = self._fit_statistics(X.detach().to(torch.float64))
        self.n_features_shape_ = tuple(X.shape[1:])
        return self

    def _check_fitted(self, X) -> torch.Tensor:
        if self.scale_ is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted yet: call fit(X_train) before transform"
            )
        X = _check_tensor("X", X)
        if tuple(X.shape[1:]) != self.n_features_shape_:
            raise ValueError(
                f"X has feature shape {tuple(X.shape[1:])}, but {type(self).__name__} was fitted "
                f"on feature shape {self.n_features_shape_}"
            )
        return X

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """Apply the fitted map ``X * scale_ + shift_`` (dtype of ``X`` kept if floating)."""
        X = self._check_fitted(X)
        dtype = X.dtype if X.is_floating_point() else torch.float32
        scale, shift = self.scale_.to(X.device), self.shift_.to(X.device)
        return (X.to(torch.float64) * scale + shift).to(dtype)

    def inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`: ``(Z - shift_) / scale_``."""
        Z = self._check_fitted(Z)
        dtype = Z.dtype if Z.is_floating_point() else torch.float32
        scale, shift = self.scale_.to(Z.device), self.shift_.to(Z.device)
        return ((Z.to(torch.float64) - shift) / scale).to(dtype)

    def fit_transform(self, X: torch.Tensor) -> torch.Tensor:
        """``fit(X)`` then ``transform(X)``: use it on the training data only."""
        return self.fit(X).transform(X)


class Standardize(_Scaler):
    """Standardization (标准化, z-score) per feature (chapter 3.3):

    $$z = \\frac{x - \\mu}{\\sigma},\\qquad \\mu = \\tfrac1n\\sum_i x_i,\\quad
    \\sigma = \\sqrt{\\tfrac1n\\sum_i (x_i-\\mu)^2}$$

    with ``μ`` and ``σ`` computed on the training data only (fitting on all data leaks the test
    set into the model). A constant feature (``σ = 0``) keeps ``σ = 1``: it maps to 0, never to
    NaN — the same rule as ``sklearn.preprocessing.StandardScaler``. Statistics are taken over
    axis 0, so ``X`` may be ``(n, d)`` tables or ``(n, c, h, w)`` images (one μ, σ per pixel).
    """

    mean_: torch.Tensor | None = None
    std_: torch.Tensor | None = None

    def _fit_statistics(self, X):
        constant = X.amax(dim=0) == X.amin(dim=0)
        # the mean of n equal floats can miss their value by an ulp, and σ is then that ulp,
        # not 0: take a constant feature's value as its mean exactly, so that it maps to 0
        self.mean_ = torch.where(constant, X[0], X.mean(dim=0))
        std = torch.where(constant, torch.zeros_like(self.mean_), X.std(dim=0, correction=0))
        self.std_ = _nonzero_scale(std)
        return 1.0 / self.std_, -self.mean_ / self.std_


class MinMaxScale(_Scaler):
    """Min-max normalization (归一化) per feature into ``feature_range = (a, b)`` (chapter 3.3):

    $$x' = a + (b - a)\\,\\frac{x - \\min x}{\\max x - \\min x}$$

    with ``min`` and ``max`` taken on the training data only; test values outside the training
    range land outside ``[a, b]``. A constant feature (``max = min``) maps to ``a`` — the same
    rule as ``sklearn.preprocessing.MinMaxScaler``.
    """

    data_min_: torch.Tensor | None = None
    data_max_: torch.Tensor | None = None

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        self.feature_range = _checks.pair("feature_range", feature_range, strict=True)

    def _fit_statistics(self, X):
        a, b = self.feature_range
        self.data_min_ = X.amin(dim=0)
        self.data_max_ = X.amax(dim=0)
        scale = (b - a) / _nonzero_scale(self.data_max_ - self.data_min_)
        return scale, a - self.data_min_ * scale
