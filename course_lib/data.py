"""Datasets that need no network, splits and loaders (chapter 1; extended in chapter 3.3).

Default data: ``sklearn.datasets.load_digits`` — 1,797 real 8×8 handwritten digits that ship
with scikit-learn, so every notebook runs offline.
"""

from __future__ import annotations

import numbers
import pickle
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)


class Split(NamedTuple):
    """Features and labels of one part of a dataset."""

    X: torch.Tensor
    y: torch.Tensor


class Splits(NamedTuple):
    """Train / validation / test parts of a dataset, each a :class:`Split`."""

    train: Split
    val: Split
    test: Split


def load_digits_tensors(as_images: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 sklearn digits as ``(X, y)`` tensors.

    ``X`` is float32 in ``[0, 1]`` (pixel intensity 0–16 divided by 16), shape ``(N, 64)`` or
    ``(N, 1, 8, 8)`` with ``as_images=True``; ``y`` is int64 in ``0..9``.
    """
    _check_flag("as_images", as_images)
    bunch = load_digits()
    X = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    if as_images:
        X = X.reshape(-1, 1, 8, 8)
    return X, y


def _check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _check_seed(seed, high: int = 2**63) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < high:
        bound = "2**32 - 1" if high == 2**32 else "2**63 - 1"
        raise ValueError(f"seed must be an int in [0, {bound}], got {seed}")


def _check_samples(X, y) -> None:
    """``X`` and ``y``: tensors with the same, non-zero number of samples."""
    for name, value in (("X", X), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim == 0:
            raise ValueError(f"{name} must have a sample axis (ndim >= 1), got a 0-d tensor")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if len(y) == 0:
        raise ValueError("X and y must hold at least one sample, got 0")


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def train_val_test_split(
    X: torch.Tensor,
    y: torch.Tensor,
    val_size: float = 0.2,
    test_size: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
) -> Splits:
    """Split ``(X, y)`` into train / validation / test parts.

    ``val_size`` and ``test_size`` are fractions of the whole dataset; with ``stratify=True``
    each part keeps the class proportions of ``y`` (a *stratified* split, 分层抽样).
    """
    _check_fraction("val_size", val_size)
    _check_fraction("test_size", test_size)
    if val_size + test_size >= 1.0:
        raise ValueError(f"val_size + test_size must be < 1, got {val_size + test_size}")
    _check_samples(X, y)
    _check_seed(seed, high=2**32)
    _check_flag("stratify", stratify)
    index = np.arange(len(y))
    labels = y.cpu().numpy()
    rest, test = train_test_split(
        index, test_size=test_size, random_state=seed, stratify=labels if stratify else None
    )
    val_fraction_of_rest = val_size / (1.0 - test_size)
    train, val = train_test_split(
        rest,
        test_size=val_fraction_of_rest,
        random_state=seed,
        stratify=labels[rest] if stratify else None,
    )
    pick = lambda idx: Split(X[torch.as_tensor(idx)], y[torch.as_tensor(idx)])  # noqa: E731
    return Splits(pick(train), pick(val), pick(test))


def load_digits_split(
    val_size: float = 0.2, test_size: float = 0.2, seed: int = 0, as_images: bool = False
) -> Splits:
    """The sklearn digits, split stratified into train / validation / test (default 60/20/20)."""
    X, y = load_digits_tensors(as_images=as_images)
    return train_val_test_split(X, y, val_size=val_size, test_size=test_size, seed=seed)


def batch_loader(
    split: Split, batch_size: int = 64, shuffle: bool = True, seed: int = 0
) -> DataLoader:
    """A ``DataLoader`` over one in-memory split that gathers each mini-batch with a single
    indexing operation (a ``BatchSampler`` hands the loader whole lists of indices) instead of
    fetching and collating examples one by one — several times faster for small models.
    With ``shuffle=True`` the order comes from a generator seeded with ``seed``: same seed,
    same batches (chapters 1 and 3.2)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise TypeError(f"split must be a Split (X, y) of two tensors, got {type(split).__name__}")
    _check_samples(*split)
    _check_flag("shuffle", shuffle)
    _check_seed(seed)
    dataset = TensorDataset(*split)
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None
    )


def make_loaders(
    splits: Splits, batch_size: int = 64, seed: int = 0, eval_batch_size: int = 1024
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Loaders for the three parts (see :func:`batch_loader`): the training one shuffles with
    a seeded generator (same seed, same batch order), the others keep their order."""
    if not all(hasattr(splits, part) for part in ("train", "val", "test")):
        raise TypeError(
            "splits must be a Splits (train, val, test) of Split pairs, "
            f"got {type(splits).__name__}"
        )
    train = batch_loader(splits.train, batch_size, shuffle=True, seed=seed)
    try:
        val = batch_loader(splits.val, eval_batch_size, shuffle=False)
        test = batch_loader(splits.test, eval_batch_size, shuffle=False)
    except ValueError as err:
        raise ValueError(str(err).replace("batch_size", "eval_batch_size")) from None
    return train, val, test


def _check_tensor(name: str, X) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
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
        if (
            not isinstance(feature_range, (tuple, list))
            or len(feature_range) != 2
            or not all(isinstance(v, (int, float)) for v in feature_range)
        ):
            raise TypeError(
                f"feature_range must be a pair (a, b) of numbers, got {feature_range!r}"
            )
        if not feature_range[0] < feature_range[1]:
            raise ValueError(f"feature_range must satisfy a < b, got {tuple(feature_range)}")
        self.feature_range = (float(feature_range[0]), float(feature_range[1]))

    def _fit_statistics(self, X):
        a, b = self.feature_range
        self.data_min_ = X.amin(dim=0)
        self.data_max_ = X.amax(dim=0)
        scale = (b - a) / _nonzero_scale(self.data_max_ - self.data_min_)
        return scale, a - self.data_min_ * scale


def subsample_indices(
    y: torch.Tensor, fraction: float, seed: int = 0, stratify: bool = True
) -> torch.Tensor:
    """Indices of a random ``fraction`` of the samples (sorted), for training on less data
    ("sparsity" as sampling, chapter 3.3).

    ``stratify=True`` draws ``round(fraction · n_c)`` (at least 1) from every class ``c`` so
    the class proportions are kept; ``stratify=False`` draws ``round(fraction · n)`` (at least 1)
    uniformly. Same seed, same indices.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a 1-D torch.Tensor of labels, got {type(y).__name__}")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D tensor of labels, got shape {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError("y must hold at least one label, got an empty tensor")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        raise TypeError(f"fraction must be a number, got {type(fraction).__name__}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _check_seed(seed)
    _check_flag("stratify", stratify)
    generator = torch.Generator().manual_seed(seed)
    if not stratify:
        k = max(1, round(fraction * len(y)))
        return torch.randperm(len(y), generator=generator)[:k].sort().values
    picked = []
    for label in torch.unique(y.cpu()):
        members = torch.nonzero(y.cpu() == label).flatten()
        k = max(1, round(fraction * len(members)))
        picked.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(picked).sort().values


def subsample(
    X: torch.Tensor, y: torch.Tensor, fraction: float, seed: int = 0, stratify: bool = True
) -> Split:
    """The :class:`Split` ``(X[idx], y[idx])`` for ``idx = subsample_indices(y, ...)``."""
    _check_samples(X, y)
    index = subsample_indices(y, fraction, seed=seed, stratify=stratify).to(y.device)
    return Split(X[index], y[index])


def density(X: torch.Tensor) -> float:
    """Fraction of non-zero entries, ``nnz / numel`` (dense or sparse tensor; chapter 3.3)."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
    if X.numel() == 0:
        return 0.0
    if X.layout == torch.strided:
        return int(torch.count_nonzero(X)) / X.numel()
    return int(torch.count_nonzero(X.to_dense())) / X.numel()


def to_sparse(X: torch.Tensor, layout: str = "csr") -> torch.Tensor:
    """A dense matrix as a ``torch.sparse`` tensor (chapter 3.3).

    ``"coo"`` stores every non-zero as (row, col, value): ``2·nnz`` int64 indices + ``nnz``
    values. ``"csr"`` compresses the rows: ``nnz`` column indices, ``n_rows + 1`` row pointers
    (``crow_indices``) and ``nnz`` values.
    """
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a dense torch.Tensor, got {type(X).__name__}")
    if X.layout != torch.strided:
        raise TypeError(f"X must be a dense (strided) torch.Tensor, got layout {X.layout}")
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D matrix, got shape {tuple(X.shape)}")
    if layout == "coo":
        return X.to_sparse_coo().coalesce()
    if layout == "csr":
        import warnings

        with warnings.catch_warnings():  # "CSR support is in beta": fine for what we use
            warnings.simplefilter("ignore", UserWarning)
            return X.to_sparse_csr()
    raise ValueError(f"layout must be 'coo' or 'csr', got {layout!r}")


def memory_bytes(X: torch.Tensor) -> int:
    """Bytes a tensor's storage needs (chapter 3.3).

    Dense: ``numel · element_size``. COO: values + indices (``ndim × nnz`` int64). CSR: values
    + column indices + row pointers. So CSR beats dense when
    ``nnz · (s_v + s_i) + (rows + 1) · s_i < rows · cols · s_v``.
    """
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")

    def nbytes(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    if X.layout == torch.strided:
        return nbytes(X)
    if X.layout == torch.sparse_coo:
        X = X.coalesce()
        return nbytes(X.values()) + nbytes(X.indices())
    if X.layout == torch.sparse_csr:
        return nbytes(X.values()) + nbytes(X.col_indices()) + nbytes(X.crow_indices())
    raise ValueError(f"X must have layout strided, sparse_coo or sparse_csr, got {X.layout}")


def random_sparse_matrix(rows: int, cols: int, density: float, seed: int = 0) -> torch.Tensor:
    """A dense ``(rows, cols)`` float32 matrix with exactly ``round(density · rows · cols)``
    non-zeros (standard normal values) at uniformly random places (chapter 3.3)."""
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if (
        isinstance(density, bool)
        or not isinstance(density, (int, float))
        or not 0.0 <= density <= 1.0
    ):
        raise ValueError(f"density must be in [0, 1], got {density!r}")
    _check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    nnz = round(density * rows * cols)
    X = torch.zeros(rows * cols)
    where = torch.randperm(rows * cols, generator=generator)[:nnz]
    values = torch.randn(nnz, generator=generator)
    X[where] = torch.where(values == 0, torch.ones_like(values), values)
    return X.reshape(rows, cols)


def matmul_seconds(A: torch.Tensor, B: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time in seconds of ``A @ B`` (``A`` dense or sparse) over ``repeats`` runs
    after one warm-up (chapter 3.3). Noisy on a shared machine: compare ratios, not values."""
    import statistics
    import time

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    for name, M in (("A", A), ("B", B)):
        if not isinstance(M, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(M).__name__}")
        if M.ndim != 2:
            raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(M.shape)}")
    if A.shape[1] != B.shape[0]:
        raise ValueError(
            f"A and B must be compatible, A.shape[1] == B.shape[0], got {tuple(A.shape)} "
            f"and {tuple(B.shape)}"
        )
    A @ B
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        A @ B
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_sample_photo(name: str = "china.jpg") -> torch.Tensor:
    """One of scikit-learn's two sample photographs (``"china.jpg"`` or ``"flower.jpg"``,
    427×640, shipped with sklearn: no network) as a float32 ``(3, H, W)`` tensor in ``[0, 1]``
    (chapter 3.3)."""
    from sklearn.datasets import load_sample_image

    if name not in ("china.jpg", "flower.jpg"):
        raise ValueError(f"name must be 'china.jpg' or 'flower.jpg', got {name!r}")
    image = np.array(load_sample_image(name))  # (H, W, 3) uint8, a writable copy
    return torch.from_numpy(image).permute(2, 0, 1).contiguous().float() / 255.0


def load_mnist1d(num_samples: int = 4000, seed: int = 42, train_split: float = 0.8):
    """MNIST-1D {cite}`greydanus2020` generated locally with the ``mnist1d`` package (its
    generator, never its download): ``(train, test)`` :class:`Split`\\ s, ``X`` float32
    ``(n, 40)`` signals, ``y`` int64 in ``0..9`` (chapter 3.3).

    A 1-D stand-in for MNIST that is small enough to train on a CPU in seconds, yet separates
    models better than the 8×8 digits. The generator reseeds NumPy's and Python's global RNGs;
    this function restores them afterwards.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 20:
        raise ValueError(f"num_samples must be an int >= 20, got {num_samples!r}")
    _check_fraction("train_split", train_split)
    _check_seed(seed, high=2**32)
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)

    def split(x, y) -> Split:
        return Split(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64))

    return split(data["x"], data["y"]), split(data["x_test"], data["y_test"])


# Optional downloads for readers online: the reading code is tested offline on tiny files.
TORCHVISION_DATASETS = {
    "mnist": ("MNIST", "ossci-datasets.s3.amazonaws.com", 443),  # torchvision's first mirror
    "fashion_mnist": ("FashionMNIST", "fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("CIFAR10", "www.cs.toronto.edu", 443),
}
CIFAR10_FOLDER = "cifar-10-batches-py"


def _can_reach(host: str, port: int, timeout: float) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _files_present(name: str, root, train: bool) -> bool:
    from pathlib import Path

    root = Path(root)
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        return all((root / CIFAR10_FOLDER / f).is_file() for f in files)
    raw = root / TORCHVISION_DATASETS[name][0] / "raw"  # torchvision wants train and test files
    names = [f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    return all((raw / f).is_file() for f in names)


# What a CIFAR-10 batch file may name when unpickled: numpy arrays and dtypes, nothing else.
_CIFAR_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                   "numpy._core.numeric", "numpy")
    for name in ("_reconstruct", "_frombuffer", "ndarray", "dtype", "scalar")
} | {("_codecs", "encode")}  # how protocol 2 stores bytes: a string codec, it runs nothing


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses any other global, so
    a tampered dataset file cannot run code (plain ``pickle.load`` would)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_ALLOWED:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a CIFAR-10 batch holds only numpy arrays"
            )
        return super().find_class(module, name)


def read_cifar10(root, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Read torchvision's CIFAR-10 layout ``root/cifar-10-batches-py/data_batch_1..5`` (or
    ``test_batch``): pickled dicts with ``data`` (uint8 ``(n, 3072)``, channel-major) and
    ``labels``. Returns ``X`` float32 ``(n, 3, 32, 32)`` in ``[0, 1]`` and ``y`` int64.
    The files are unpickled with an unpickler that accepts numpy arrays only: a file that
    names any other Python object raises ``pickle.UnpicklingError`` instead of running it."""
    from pathlib import Path

    if not isinstance(root, (str, Path)) and not hasattr(root, "__fspath__"):
        raise TypeError(f"root must be a str or path-like folder, got {type(root).__name__}")
    _check_flag("train", train)
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    data, labels = [], []
    for file in files:
        with open(Path(root) / CIFAR10_FOLDER / file, "rb") as f:
            entry = _ArrayOnlyUnpickler(f, encoding="latin1").load()
        data.append(np.asarray(entry["data"], dtype=np.uint8))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    X = torch.from_numpy(np.vstack(data).reshape(-1, 3, 32, 32)).float() / 255.0
    return X, torch.tensor(labels, dtype=torch.int64)


def load_torchvision_dataset(
    name: str,
    root="data",
    train: bool = True,
    download: bool = False,
    timeout: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST, Fashion-MNIST or CIFAR-10 (``name`` = ``"mnist"``, ``"fashion_mnist"``,
    ``"cifar10"``) as ``(X, y)`` tensors: ``X`` float32 in ``[0, 1]``, ``(n, 1, 28, 28)`` or
    ``(n, 3, 32, 32)``; ``y`` int64 (chapter 3.3; optional, for readers online).

    Files already under ``root`` (torchvision's layout) are read without network. Otherwise, with
    ``download=True``, the host is probed for ``timeout`` seconds first, so that an offline
    machine fails fast with a ``ConnectionError`` that says what to do instead of hanging; with
    ``download=False`` a ``FileNotFoundError`` says where the files are expected.
    """
    from pathlib import Path

    import torchvision

    if name not in TORCHVISION_DATASETS:
        raise ValueError(f"name must be one of {sorted(TORCHVISION_DATASETS)}, got {name!r}")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    _check_flag("train", train)
    _check_flag("download", download)
    root = Path(root)
    class_name, host, port = TORCHVISION_DATASETS[name]
    if not _files_present(name, root, train):
        if not download:
            raise FileNotFoundError(
                f"{name} is not under {root.resolve()}: pass download=True on a machine with "
                "internet access, or copy torchvision's files there; offline, use "
                "load_digits_tensors() or load_mnist1d() instead"
            )
        if not _can_reach(host, port, timeout):
            raise ConnectionError(
                f"cannot reach {host} within {timeout} s to download {name}: this machine looks "
                f"offline. Download it elsewhere into {root.resolve()} (torchvision layout), or "
                "use the offline datasets load_digits_tensors() / load_mnist1d()"
            )
        getattr(torchvision.datasets, class_name)(str(root), train=train, download=True)
    if name == "cifar10":
        return read_cifar10(root, train=train)
    dataset = getattr(torchvision.datasets, class_name)(str(root), train=train, download=False)
    X = dataset.data.to(torch.float32).unsqueeze(1) / 255.0
    return X, dataset.targets.to(torch.int64)
