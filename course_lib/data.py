"""Datasets that need no network, splits, loaders and subsampling (chapter 1; extended in
chapter 3.3: step budgets, imbalanced subsets and class-balanced sampling, a PNG image folder
on disk for data-loading measurements).

Default data: ``sklearn.datasets.load_digits`` — 1,797 real 8×8 handwritten digits that ship
with scikit-learn, so every notebook runs offline — plus scikit-learn's two sample photos and
MNIST-1D generated locally. Scalers live in :mod:`course_lib.scaling`, sparse storage in
:mod:`course_lib.sparse`, optional downloads in :mod:`course_lib.online`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
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


def _loader_options(num_workers, pin_memory, persistent_workers, prefetch_factor) -> dict:
    """Checked ``DataLoader`` options for worker processes and pinned memory."""
    num_workers = _checks.integer("num_workers", num_workers, 0)
    _checks.flag("pin_memory", pin_memory)
    _checks.flag("persistent_workers", persistent_workers)
    prefetch_factor = _checks.positive_int("prefetch_factor", prefetch_factor, allow_none=True)
    if num_workers == 0 and (persistent_workers or prefetch_factor is not None):
        raise ValueError(
            "persistent_workers and prefetch_factor must be left at their defaults (False, "
            f"None) with num_workers=0 (no worker processes), got persistent_workers="
            f"{persistent_workers}, prefetch_factor={prefetch_factor}"
        )
    options = dict(num_workers=num_workers, pin_memory=pin_memory,
                   persistent_workers=persistent_workers)  # fmt: skip
    if prefetch_factor is not None:
        options["prefetch_factor"] = prefetch_factor
    return options


def batch_loader(
    split: Split,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over one in-memory split that gathers each mini-batch with a single
    indexing operation (a ``BatchSampler`` hands the loader whole lists of indices) instead of
    fetching and collating examples one by one — several times faster for small models.
    With ``shuffle=True`` the order comes from a generator seeded with ``seed``: same seed,
    same batches (chapters 1 and 3.2).

    ``num_workers``, ``pin_memory``, ``persistent_workers`` and ``prefetch_factor`` go to the
    ``DataLoader`` (chapters 3.3, 3.4): worker processes that prepare batches while the model
    trains (kept alive between epochs, each holding ``prefetch_factor`` batches ready), and
    page-locked host memory from which a copy to a GPU can run asynchronously
    (``tensor.to("cuda", non_blocking=True)``). For data already in memory, workers only add
    the cost of sending every batch between processes (chapter 3.3 measures it).
    ``drop_last=True`` skips each epoch's last, incomplete batch (every batch then has
    ``batch_size`` examples; a different random remainder is left out in each epoch)."""
    batch_size = _checks.positive_int("batch_size", batch_size)
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise TypeError(f"split must be a Split (X, y) of two tensors, got {type(split).__name__}")
    _check_samples(*split)
    _checks.flag("shuffle", shuffle)
    _checks.seed("seed", seed)
    _checks.flag("drop_last", drop_last)
    if drop_last and len(split[1]) < batch_size:
        raise ValueError(f"batch_size must be <= the number of examples ({len(split[1])}) with "
                         f"drop_last=True (else no batch is left), got {batch_size}")  # fmt: skip
    options = _loader_options(num_workers, pin_memory, persistent_workers, prefetch_factor)
    dataset = TensorDataset(*split)
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, batch_size, drop_last=drop_last), batch_size=None,
        **options,
    )


def make_loaders(
    splits: Splits,
    batch_size: int = 64,
    seed: int = 0,
    eval_batch_size: int = 1024,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Loaders for the three parts (see :func:`batch_loader`): the training one shuffles with
    a seeded generator (same seed, same batch order), the others keep their order.
    The worker and memory options go to all three ``DataLoader`` s."""
    if not all(hasattr(splits, part) for part in ("train", "val", "test")):
        raise TypeError(
            "splits must be a Splits (train, val, test) of Split pairs, "
            f"got {type(splits).__name__}"
        )
    eval_batch_size = _checks.positive_int("eval_batch_size", eval_batch_size)
    options = dict(num_workers=num_workers, pin_memory=pin_memory,
                   persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
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


def class_subsample_indices(
    y: torch.Tensor, fractions: Mapping[int, float], seed: int = 0
) -> torch.Tensor:
    """Indices (sorted) that keep ``round(fractions[c] · n_c)`` (at least 1) random examples of
    each class ``c`` named in ``fractions`` and every example of the other classes: an
    *imbalanced* subset made on purpose (chapter 3.3). Same seed, same indices."""
    _checks.tensor("y", y, ndim=1, nonempty=True)
    _checks.instance("fractions", fractions, Mapping, "a dict of class -> fraction in (0, 1]")
    _checks.seed("seed", seed)
    labels = y.cpu()
    present = set(torch.unique(labels).tolist())
    for label, fraction in fractions.items():
        _checks.one_of("fractions keys", label, sorted(present))
        _checks.real(f"fractions[{label}]", fraction, 0, 1, low_open=True)
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for label in sorted(present):
        members = torch.nonzero(labels == label).flatten()
        if label in fractions:
            k = max(1, round(fractions[label] * len(members)))
            members = members[torch.randperm(len(members), generator=generator)[:k]]
        picked.append(members)
    return torch.cat(picked).sort().values


def class_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-example weights ``w_i = 1 / n_{y_i}`` (float64): sampling with probabilities
    ``∝ w`` draws every class equally often, ``P(class c) = n_c · (1/n_c) / Σ_k 1 = 1/K``
    (class-balanced sampling, chapter 3.3)."""
    _checks.tensor("y", y, ndim=1, nonempty=True)
    if y.is_floating_point():
        raise TypeError(f"y must be a tensor of integer class labels, got dtype {y.dtype}")
    counts = torch.bincount(y.cpu())
    return 1.0 / counts[y.cpu()].double()


def balanced_loader(split: Split, batch_size: int = 64, steps: int = 100, seed: int = 0
                    ) -> DataLoader:  # fmt: skip
    """A ``DataLoader`` of exactly ``steps`` mini-batches drawn *with replacement* by
    ``torch.utils.data.WeightedRandomSampler`` with the weights of :func:`class_weights`, so
    that every class appears equally often on average however imbalanced the split is
    (chapter 3.3). Batches are gathered in one indexing operation, as in :func:`batch_loader`;
    same seed, same batches. One pass over the loader is the whole step budget."""
    batch_size = _checks.positive_int("batch_size", batch_size)
    steps = _checks.positive_int("steps", steps)
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise TypeError(f"split must be a Split (X, y) of two tensors, got {type(split).__name__}")
    _check_samples(*split)
    _checks.seed("seed", seed)
    sampler = WeightedRandomSampler(
        class_weights(split[1]), num_samples=steps * batch_size, replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return DataLoader(TensorDataset(*split), sampler=BatchSampler(sampler, batch_size, False),
                      batch_size=None)  # fmt: skip


def step_batches(n: int, batch_size: int, steps: int, seed: int = 0, drop_last: bool = False
                 ) -> list[torch.Tensor]:  # fmt: skip
    """Exactly ``steps`` mini-batches of indices into ``range(n)``: the shuffled epochs of
    :func:`batch_loader` (same ``seed``, same order), one after another, cut when the budget is
    spent (chapter 3.3). Comparing training-set sizes at equal *epochs* gives a small set far
    fewer updates (20 examples in batches of 32: one step per epoch); a step budget keeps the
    number of updates, and with ``drop_last`` the batch size, equal. ``batch_size`` larger than
    ``n`` gives full batches of ``n``."""
    n = _checks.positive_int("n", n)
    batch_size = _checks.positive_int("batch_size", batch_size)
    steps = _checks.positive_int("steps", steps)
    index = torch.arange(n)
    loader = batch_loader(Split(index, index), batch_size, shuffle=True, seed=seed,
                          drop_last=drop_last)  # fmt: skip
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        batches.extend(x for x, _ in loader)
    return batches[:steps]


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


# --- an image folder on disk (chapter 3.3) -----------------------------------------------------


def write_png_folder(images: torch.Tensor, labels: torch.Tensor, root, compress_level: int = 6
                     ) -> list[Path]:  # fmt: skip
    """Write ``images`` as PNG files into class folders, ``root/<label>/<index>.png`` — the
    layout of ``torchvision.datasets.ImageFolder`` (chapter 3.3). ``images``: ``(N, C, H, W)``
    with ``C`` 1 or 3, uint8 or float in ``[0, 1]`` (rounded to 8 bits). PNG is lossless:
    :class:`PNGFolder` reads back exactly the 8-bit pixels. Returns the paths in index order.
    Encoded with Pillow (torchvision's own PNG codec is deprecated since torchvision 0.29);
    ``compress_level`` 0–9 trades file size for writing time (1: fast, larger files)."""
    from PIL import Image

    _checks.tensor("images", images, ndim=4, nonempty=True)
    _checks.tensor("labels", labels, ndim=1)
    if len(labels) != len(images) or labels.is_floating_point():
        raise ValueError(f"labels must be {len(images)} integer labels, one per image, "
                         f"got shape {tuple(labels.shape)} of dtype {labels.dtype}")  # fmt: skip
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, got C = {images.shape[1]}")
    if images.is_floating_point():
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 or floating point, got dtype {images.dtype}")
    compress_level = _checks.integer("compress_level", compress_level, 0, 9)
    root = Path(root)
    width = len(str(len(images) - 1))
    paths = []
    for index, (image, label) in enumerate(zip(images.cpu(), labels.tolist())):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:0{width}d}.png"
        pixels = image.permute(1, 2, 0).numpy()  # (H, W, C) for Pillow
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(
            path, compress_level=compress_level)
        paths.append(path)
    return paths


class PNGFolder(Dataset):
    """The PNG files of ``root/<class>/*.png`` as a map-style ``Dataset`` of ``(image, label)``
    pairs, decoded on every access with Pillow (``PIL.Image.open``) into float32
    ``(C, H, W)`` in ``[0, 1]`` (chapter 3.3). Classes and files in sorted order, so that
    ``class_to_idx`` and ``samples`` equal those of ``torchvision.datasets.ImageFolder``.

    Reading and decoding a file is work a ``DataLoader`` worker process can do while the main
    process trains: the case where ``num_workers > 0`` pays off. ``transform`` (optional) is
    applied to each decoded image."""

    def __init__(self, root, transform=None) -> None:
        root = Path(_checks.instance("root", root, (str, Path), "a path (str or Path)"))
        if not root.is_dir():
            raise FileNotFoundError(f"root must be an existing folder, got {str(root)!r}")
        self.transform = _checks.callable_or_none("transform", transform, "transform(image)")
        classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}
        self.samples = [
            (str(path), self.class_to_idx[name])
            for name in classes
            for path in sorted((root / name).glob("*.png"))
        ]
        if not self.samples:
            raise FileNotFoundError(f"root must hold class folders of .png files, got none "
                                    f"in {str(root)!r}")  # fmt: skip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as file:
            pixels = np.array(file)  # (H, W) or (H, W, C) uint8
        image = torch.from_numpy(pixels).reshape(*pixels.shape[:2], -1).permute(2, 0, 1)
        image = image.float() / 255.0
        if self.transform is not None:
            image = self.transform(image)
        return image, label
