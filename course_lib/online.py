"""Optional downloads for readers online (chapter 3.3): MNIST, Fashion-MNIST and CIFAR-10
through torchvision, behind a network probe that fails fast offline, and a CIFAR-10 reader
whose unpickler accepts numpy arrays only. The reading code is tested offline on tiny files;
offline, the chapters use :mod:`course_lib.data` (digits, sample photos, MNIST-1D).
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import numpy as np
import torch

from course_lib import _checks

TORCHVISION_DATASETS = {
    "mnist": ("MNIST", "ossci-datasets.s3.amazonaws.com", 443),  # torchvision's first mirror
    "fashion_mnist": ("FashionMNIST", "fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("CIFAR10", "www.cs.toronto.edu", 443),
}
CIFAR10_FOLDER = "cifar-10-batches-py"


def _can_reach(host: str, port: int, timeout: float) -> bool:
    """The probe: can a TCP connection to ``host:port`` open within ``timeout`` seconds?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _files_present(name: str, root, train: bool) -> bool:
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
    _checks.instance("root", root, (str, os.PathLike), "a str or path-like folder")
    _checks.flag("train", train)
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
    import torchvision

    _checks.one_of("name", name, sorted(TORCHVISION_DATASETS))
    _checks.instance("root", root, (str, os.PathLike), "a str or path-like folder")
    _checks.flag("train", train)
    _checks.flag("download", download)
    timeout = _checks.positive("timeout", timeout)
    root = Path(root)
    class_name, host, port = TORCHVISION_DATASETS[name]
    if not _files_present(name, root, train):
        if not download:
            raise FileNotFoundError(
                f"{name} is not under {root.resolve()}: pass download=True on a machine with "
                "internet access, or copy torchvision's files there; offline, use "
                "course_lib.data.load_digits_tensors() or load_mnist1d() instead"
            )
        if not _can_reach(host, port, timeout):
            raise ConnectionError(
                f"cannot reach {host} within {timeout} s to download {name}: this machine looks "
                f"offline. Download it elsewhere into {root.resolve()} (torchvision layout), or "
                "use the offline datasets course_lib.data.load_digits_tensors() / load_mnist1d()"
            )
        getattr(torchvision.datasets, class_name)(str(root), train=train, download=True)
    if name == "cifar10":
        return read_cifar10(root, train=train)
    dataset = getattr(torchvision.datasets, class_name)(str(root), train=train, download=False)
    X = dataset.data.to(torch.float32).unsqueeze(1) / 255.0
    return X, dataset.targets.to(torch.int64)
