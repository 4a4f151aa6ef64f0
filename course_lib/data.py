"""Datasets that need no network, splits, loaders and subsampling (chapter 1; extended in
chapter 3.3).

Default data: ``sklearn.datasets.load_digits`` — 1,797 real 8×8 handwritten digits that ship
with scikit-learn, so every notebook runs offline — plus scikit-learn's two sample photos and
MNIST-1D generated locally. Scalers live in :mod:`course_lib.scaling`, sparse storage in
:mod:`course_lib.sparse`, optional downloads in :mod:`course_lib.online`.
"""

from __future__ import annotations

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

from course_lib import _checks


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
    _checks.flag("as_images", as_images)
    bunch = load_digits()
    X = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    if as_images:
        X = X.reshape(-1, 1, 8, 8)
    return X, y


def _check_samples(X, y) -> None:
    """``X`` and ``y``: tensors with the same, non-zero number of samples."""
    for name, value in (("X", X), ("y", y)):
        _checks.tensor(name, value)
        if value.ndim == 0:
            raise ValueError(f"{name} must have a sample axis (ndim >= 1), got a 0-d tensor")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if len(y) == 0:
        raise ValueError("X and y must hold at least one sample, got 0")


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
    val_size = _checks.fraction("val_size", val_size)
    test_size = _checks.fraction("test_size", test_size)
    if val_size + test_size >= 1.0:
        raise ValueError(f"val_size + test_size must be < 1, got {val_size + test_size}")
    _check_samples(X, y)
    _checks.seed("seed", seed)
    _checks.flag("stratify", stratify)
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
    split: Split,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over one in-memory split that gathers each mini-batch with a single
    indexing operation (a ``BatchSampler`` hands the loader whole lists of indices) instead of
    fetching and collating examples one by one — several times faster for small models.
    With ``shuffle=True`` the order comes from a generator seeded with ``seed``: same seed,
    same batches (chapters 1 and 3.2).

    ``num_workers`` and ``pin_memory`` go to the ``DataLoader`` (chapter 3.4): worker processes
    that prepare batches while the model trains, and page-locked host memory from which a copy
    to a GPU can run asynchronously (``tensor.to("cuda", non_blocking=True)``)."""
    batch_size = _checks.positive_int("batch_size", batch_size)
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise TypeError(f"split must be a Split (X, y) of two tensors, got {type(split).__name__}")
    _check_samples(*split)
    _checks.flag("shuffle", shuffle)
    _checks.seed("seed", seed)
    num_workers = _checks.integer("num_workers", num_workers, 0)
    _checks.flag("pin_memory", pin_memory)
    dataset = TensorDataset(*split)
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )


def make_loaders(
    splits: Splits,
    batch_size: int = 64,
    seed: int = 0,
    eval_batch_size: int = 1024,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Loaders for the three parts (see :func:`batch_loader`): the training one shuffles with
    a seeded generator (same seed, same batch order), the others keep their order.
    ``num_workers`` and ``pin_memory`` go to all three ``DataLoader`` s."""
    if not all(hasattr(splits, part) for part in ("train", "val", "test")):
        raise TypeError(
            "splits must be a Splits (train, val, test) of Split pairs, "
            f"got {type(splits).__name__}"
        )
    eval_batch_size = _checks.positive_int("eval_batch_size", eval_batch_size)
    options = dict(num_workers=num_workers, pin_memory=pin_memory)
    train = batch_loader(splits.train, batch_size, shuffle=True, seed=seed, **options)
    val = batch_loader(splits.val, eval_batch_size, shuffle=False, **options)
    test = batch_loader(splits.test, eval_batch_size, shuffle=False, **options)
    return train, val, test


def subsample_indices(
    y: torch.Tensor, fraction: float, seed: int = 0, stratify: bool = True
) -> torch.Tensor:
    """Indices of a random ``fraction`` of the samples (sorted), for training on less data
    ("sparsity" as sampling, chapter 3.3).

    ``stratify=True`` draws ``round(fraction · n_c)`` (at least 1) from every class ``c`` so
    the class proportions are kept; ``stratify=False`` draws ``round(fraction · n)`` (at least 1)
    uniformly. Same seed, same indices.
    """
    _checks.tensor("y", y, ndim=1, nonempty=True)
    fraction = _checks.real("fraction", fraction, 0, 1, low_open=True)
    _checks.seed("seed", seed)
    _checks.flag("stratify", stratify)
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


def load_sample_photo(name: str = "china.jpg") -> torch.Tensor:
    """One of scikit-learn's two sample photographs (``"china.jpg"`` or ``"flower.jpg"``,
    427×640, shipped with sklearn: no network) as a float32 ``(3, H, W)`` tensor in ``[0, 1]``
    (chapter 3.3)."""
    from sklearn.datasets import load_sample_image

    _checks.one_of("name", name, ("china.jpg", "flower.jpg"))
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

    _checks.integer("num_samples", num_samples, 20)
    train_split = _checks.fraction("train_split", train_split)
    _checks.seed("seed", seed)
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
