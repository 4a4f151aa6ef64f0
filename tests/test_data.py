"""course_lib.data, chapter 3.3 part: scalers vs sklearn, subsampling, sparse memory, datasets."""

from __future__ import annotations

import pickle
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_image, load_wine
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from course_lib import data
from course_lib.data import (
    MinMaxScale,
    Standardize,
    density,
    load_mnist1d,
    load_sample_photo,
    load_torchvision_dataset,
    matmul_seconds,
    memory_bytes,
    random_sparse_matrix,
    subsample,
    subsample_indices,
    to_sparse,
)


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
    with pytest.raises(ValueError, match="n_samples"):
        Standardize().fit(torch.zeros(3))
    with pytest.raises(ValueError, match="a < b"):
        MinMaxScale((1.0, 0.0))


def test_minmax_test_values_outside_training_range_leave_the_interval():
    scaler = MinMaxScale().fit(torch.tensor([[0.0], [10.0]]))
    assert torch.allclose(
        scaler.transform(torch.tensor([[-5.0], [20.0]])), torch.tensor([[-0.5], [2.0]])
    )


# --- subsampling -----------------------------------------------------------------------------


def test_stratified_subsample_keeps_class_counts():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = subsample_indices(y, 0.1, seed=3)
    counts = torch.bincount(y[idx], minlength=3).tolist()
    assert counts == [5, 3, 2]
    assert torch.equal(idx, idx.sort().values) and len(torch.unique(idx)) == len(idx)
    assert torch.equal(idx, subsample_indices(y, 0.1, seed=3))
    assert not torch.equal(idx, subsample_indices(y, 0.1, seed=4))
    assert (torch.bincount(y[subsample_indices(y, 0.01)], minlength=3) == 1).all()  # >= 1 each


def test_random_subsample_size_and_split():
    X, y = torch.arange(200.0).reshape(100, 2), torch.arange(100) % 7
    part = subsample(X, y, 0.25, seed=0, stratify=False)
    assert len(part.X) == 25
    rows = (part.X[:, 0] / 2).long()
    assert torch.equal(part.y, y[rows])
    assert len(subsample_indices(y, 1.0, stratify=False)) == 100
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            subsample_indices(y, bad)
    with pytest.raises(ValueError, match="same length"):
        subsample(X[:5], y, 0.5)


# --- sparse representations ------------------------------------------------------------------


def test_random_sparse_matrix_has_exact_density():
    A = random_sparse_matrix(40, 50, 0.1, seed=1)
    assert int(torch.count_nonzero(A)) == 200
    assert density(A) == pytest.approx(0.1)
    assert torch.equal(A, random_sparse_matrix(40, 50, 0.1, seed=1))
    with pytest.raises(ValueError, match="density"):
        random_sparse_matrix(4, 4, 1.5)


def test_memory_bytes_match_hand_formulas():
    rows, cols, nnz = 40, 50, 200
    A = random_sparse_matrix(rows, cols, nnz / (rows * cols), seed=0)
    assert memory_bytes(A) == rows * cols * 4
    csr, coo = to_sparse(A, "csr"), to_sparse(A, "coo")
    assert memory_bytes(csr) == nnz * 4 + nnz * 8 + (rows + 1) * 8
    assert memory_bytes(coo) == nnz * 4 + 2 * nnz * 8
    assert density(csr) == pytest.approx(0.1)
    for S in (csr, coo):
        assert torch.equal(S.to_dense(), A)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_matmul_equals_dense_and_timer_runs(layout):
    A = random_sparse_matrix(30, 20, 0.2, seed=2)
    B = torch.randn(20, 7)
    S = to_sparse(A, layout)
    torch.testing.assert_close(S @ B, A @ B)
    assert matmul_seconds(S, B, repeats=3) > 0
    with pytest.raises(ValueError, match="layout"):
        to_sparse(A, "bsr")
    with pytest.raises(ValueError, match="2-D"):
        to_sparse(torch.zeros(2, 2, 2))


# --- datasets --------------------------------------------------------------------------------


def test_sample_photo_is_sklearns_image():
    photo = load_sample_photo("flower.jpg")
    ref = load_sample_image("flower.jpg")
    assert photo.shape == (3, *ref.shape[:2]) and photo.dtype == torch.float32
    assert torch.allclose(photo.permute(1, 2, 0) * 255, torch.tensor(ref, dtype=torch.float32))
    with pytest.raises(ValueError, match="china.jpg"):
        load_sample_photo("cat.png")


def test_mnist1d_uses_the_generator_and_restores_global_rng():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    train, test = load_mnist1d(num_samples=200, seed=7)
    assert np.random.rand() == expected_next  # global NumPy RNG untouched
    args = get_dataset_args()
    args.num_samples, args.seed = 200, 7
    ref = make_dataset(args)
    assert train.X.shape == (160, 40) and test.X.shape == (40, 40)
    assert train.X.dtype == torch.float32 and train.y.dtype == torch.int64
    np.testing.assert_allclose(train.X.numpy(), ref["x"], rtol=1e-6, atol=1e-6)
    assert torch.equal(test.y, torch.tensor(ref["y_test"]))


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
    folder = tmp_path / data.CIFAR10_FOLDER
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
    with pytest.raises(ValueError, match="name must be one of"):
        load_torchvision_dataset("imagenet", root=tmp_path)


def test_offline_download_fails_fast_with_a_message(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on: the probe is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(data.TORCHVISION_DATASETS, "mnist", ("MNIST", "127.0.0.1", port))
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="offline"):
        load_torchvision_dataset("mnist", root=tmp_path, download=True, timeout=2.0)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "MNIST").exists()  # nothing half-downloaded


# --- chapter 3.3 plots -----------------------------------------------------------------------


def test_chapter_3_3_plots_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import plot

    fig = plot.plot_image_grid(torch.rand(5, 1, 8, 8), titles=list("abcde"), ncols=3)
    assert len([ax for ax in fig.axes if ax.images]) == 5
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    with pytest.raises(ValueError, match="titles"):
        plot.plot_image_grid(torch.rand(2, 3, 4, 4), titles=["only one"])
    fig = plot.plot_data_curves(
        {"a": [1, 2, 3], "b": [1, 2]},
        {"a": [3.0, 2.0, 1.0], "b": [5.0, 4.0]},
        "x",
        "y",
        std={"a": [0.1, 0.1, 0.1]},
        vline=(1.5, "mark"),
        logy=True,
    )
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 3  # two curves and the vertical line
    assert list(ax.lines[0].get_ydata()) == [3.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="x values"):
        plot.plot_data_curves([1, 2], {"a": [1.0]}, "x", "y")


def test_cifar10_reader_accepts_old_protocol_pickles_and_refuses_code(tmp_path):
    """CIFAR's files are Python 2 era pickles (protocol 2); a tampered file must not run code."""
    folder = tmp_path / data.CIFAR10_FOLDER
    folder.mkdir()
    entry = {"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), "labels": [3, 7]}
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    X, y = data.read_cifar10(tmp_path, train=False)
    assert X.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Exploit(), "labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refused to load pathlib"):
        data.read_cifar10(tmp_path, train=False)
    assert not marker.exists()
