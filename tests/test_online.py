"""course_lib.online: the torchvision readers on tiny files the tests write, the offline probe,
and the CIFAR-10 unpickler that refuses code (chapter 3.3). No test touches the network."""

from __future__ import annotations

import pickle
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import online
from course_lib.online import load_torchvision_dataset


def _write_idx(path, array: np.ndarray) -> None:
    """The big-endian IDX format MNIST ships in: magic (0, 0, 0x08 = uint8, ndim), dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_mnist_reader_on_tiny_idx_files(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    images = {p: rng.integers(0, 256, size=(n, 28, 28)) for p, n in (("train", 6), ("t10k", 4))}
    labels = {p: rng.integers(0, 10, size=len(images[p])) for p in images}
    for prefix in images:
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[prefix])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[prefix])
    for train, prefix in ((True, "train"), (False, "t10k")):
        X, y = load_torchvision_dataset(name, root=tmp_path, train=train)
        assert X.shape == (len(images[prefix]), 1, 28, 28) and X.dtype == torch.float32
        np.testing.assert_allclose(X[:, 0].numpy() * 255, images[prefix], atol=1e-4)
        assert y.tolist() == labels[prefix].tolist()


def test_cifar10_reader_on_tiny_pickles_agrees_with_torchvision(tmp_path, monkeypatch):
    import torchvision

    rng = np.random.default_rng(1)
    folder = tmp_path / online.CIFAR10_FOLDER
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "data": rng.integers(0, 256, size=(3, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=3).tolist(),
        }
        batches[name] = entry
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [str(i) for i in range(10)]})
    )
    X, y = load_torchvision_dataset("cifar10", root=tmp_path, train=True)
    assert X.shape == (15, 3, 32, 32) and y.shape == (15,)
    # torchvision's own reader, with its md5 check switched off for our tiny files
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    ref = torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    np.testing.assert_allclose(X.permute(0, 2, 3, 1).numpy() * 255, ref.data, atol=1e-4)
    assert y.tolist() == ref.targets
    Xt, yt = load_torchvision_dataset("cifar10", root=tmp_path, train=False)
    assert yt.tolist() == batches["test_batch"]["labels"]
    assert torch.allclose(
        Xt.reshape(3, -1) * 255, torch.tensor(batches["test_batch"]["data"]).float()
    )


def test_missing_files_without_download_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_torchvision_dataset("mnist", root=tmp_path)


def test_offline_download_fails_fast_with_a_message(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on: the probe is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(online.TORCHVISION_DATASETS, "mnist", ("MNIST", "127.0.0.1", port))
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="offline"):
        load_torchvision_dataset("mnist", root=tmp_path, download=True, timeout=2.0)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "MNIST").exists()  # nothing half-downloaded


def test_cifar10_reader_accepts_old_protocol_pickles_and_refuses_code(tmp_path):
    """CIFAR's files are Python 2 era pickles (protocol 2); a tampered file must not run code."""
    folder = tmp_path / online.CIFAR10_FOLDER
    folder.mkdir()
    entry = {"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), "labels": [3, 7]}
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    X, y = online.read_cifar10(tmp_path, train=False)
    assert X.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Exploit(), "labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refused to load pathlib"):
        online.read_cifar10(tmp_path, train=False)
    assert not marker.exists()
