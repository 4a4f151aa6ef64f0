"""course_lib.data: the offline datasets, splits, loaders and subsampling (chapters 1, 3.3).

Bad arguments are tested once, in ``tests/test_validation.py`` (those of the functions added
for chapter 3.3's second pass, at the end of this file).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_image

from course_lib import data
from course_lib.data import load_mnist1d, load_sample_photo, subsample, subsample_indices

# --- digits and splits (chapter 1) -----------------------------------------------------------


def test_digits_tensors_shapes_and_range():
    X, y = data.load_digits_tensors()
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert X.min() >= 0 and X.max() <= 1
    Xi, _ = data.load_digits_tensors(as_images=True)
    assert Xi.shape == (1797, 1, 8, 8)


def test_split_is_stratified_disjoint_and_complete():
    splits = data.load_digits_split(val_size=0.2, test_size=0.2, seed=0)
    sizes = [len(s.y) for s in splits]
    assert sum(sizes) == 1797
    all_x = torch.cat([s.X for s in splits])
    assert (
        torch.unique(all_x, dim=0).shape[0]
        == torch.unique(data.load_digits_tensors()[0], dim=0).shape[0]
    )
    full = torch.bincount(data.load_digits_tensors()[1], minlength=10).float() / 1797
    for part in splits:
        share = torch.bincount(part.y, minlength=10).float() / len(part.y)
        assert (share - full).abs().max() < 0.01  # stratified: class shares kept within 1 point


def test_split_is_reproducible_and_seed_dependent():
    a = data.load_digits_split(seed=1).train.y
    b = data.load_digits_split(seed=1).train.y
    c = data.load_digits_split(seed=2).train.y
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- loaders ---------------------------------------------------------------------------------


def test_loaders_shuffle_reproducibly():
    splits = data.load_digits_split()
    first = [next(iter(data.make_loaders(splits, batch_size=32, seed=5)[0]))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])


def test_batch_loader_yields_whole_batches_in_order_or_shuffled():
    split = data.Split(torch.arange(10.0)[:, None], torch.arange(10))
    ordered = [y.tolist() for _, y in data.batch_loader(split, 4, shuffle=False)]
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = [y for _, y in data.batch_loader(split, 4, seed=3)]
    again = [y for _, y in data.batch_loader(split, 4, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again))
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10))


def test_num_workers_and_pin_memory_reach_the_dataloader_and_keep_the_batches():
    split = data.Split(torch.arange(20.0)[:, None], torch.arange(20))
    splits = data.Splits(split, split, split)
    plain = [y for _, y in data.batch_loader(split, 6, seed=2)]
    with warnings.catch_warnings():  # pin_memory without an accelerator: a warning, no pinning
        warnings.simplefilter("ignore", UserWarning)
        loader = data.batch_loader(split, 6, seed=2, num_workers=1, pin_memory=True)
        assert loader.num_workers == 1 and loader.pin_memory is True
        assert all(torch.equal(a, b) for a, b in zip(plain, [y for _, y in loader], strict=True))
        loaders = data.make_loaders(splits, 6, seed=2, num_workers=0, pin_memory=True)
    assert all(lo.pin_memory is True and lo.num_workers == 0 for lo in loaders)
    assert data.batch_loader(split).num_workers == 0 and not data.batch_loader(split).pin_memory


def test_persistent_workers_and_prefetch_factor_reach_the_dataloader():
    split = data.Split(torch.arange(12.0)[:, None], torch.arange(12))
    in_process = data.batch_loader(split, 5, seed=1)
    loader = data.batch_loader(split, 5, seed=1, num_workers=1, persistent_workers=True,
                               prefetch_factor=3)  # fmt: skip
    assert loader.persistent_workers is True and loader.prefetch_factor == 3
    for _ in range(2):  # the same worker serves both epochs, with the in-process batches
        plain = [y for _, y in in_process]
        assert all(torch.equal(a, b) for a, b in zip(plain, [y for _, y in loader], strict=True))
    del loader


# --- subsampling (chapter 3.3) ---------------------------------------------------------------


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


def test_class_subsample_makes_the_requested_imbalance():
    y = torch.tensor([0] * 40 + [1] * 40 + [2] * 20)
    idx = data.class_subsample_indices(y, {1: 0.25, 2: 0.1}, seed=0)
    assert torch.bincount(y[idx], minlength=3).tolist() == [40, 10, 2]
    assert torch.equal(idx, idx.sort().values)
    assert torch.equal(idx, data.class_subsample_indices(y, {1: 0.25, 2: 0.1}, seed=0))
    assert not torch.equal(idx, data.class_subsample_indices(y, {1: 0.25, 2: 0.1}, seed=1))


def test_class_weights_balance_the_expected_class_frequencies():
    y = torch.tensor([0] * 90 + [1] * 10)
    w = data.class_weights(y)
    assert w.dtype == torch.float64
    share = torch.zeros(2, dtype=torch.float64).index_add_(0, y, w) / w.sum()
    torch.testing.assert_close(share, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_balanced_loader_draws_classes_equally_and_reproducibly():
    X = torch.arange(100.0)[:, None]
    y = torch.tensor([0] * 90 + [1] * 10)
    loader = data.balanced_loader(data.Split(X, y), batch_size=50, steps=40, seed=0)
    batches = [b for _, b in loader]
    assert len(batches) == 40 and all(len(b) == 50 for b in batches)
    drawn = torch.cat(batches)
    share_minority = (drawn == 1).double().mean().item()
    assert abs(share_minority - 0.5) < 0.05  # 2,000 draws: sd of the share ≈ 0.011
    again = torch.cat([b for _, b in data.balanced_loader(data.Split(X, y), 50, 40, seed=0)])
    assert torch.equal(drawn, again)
    xs, ys = next(iter(loader))
    assert torch.equal(y[xs[:, 0].long()], ys)  # inputs and labels stay paired


def test_step_batches_spend_exactly_the_budget_in_loader_order():
    batches = data.step_batches(10, 4, 7, seed=3)
    assert [len(b) for b in batches] == [4, 4, 2] * 2 + [4]
    loader = data.batch_loader(data.Split(torch.arange(10), torch.arange(10)), 4, seed=3)
    expected = [x for _ in range(3) for x, _ in loader][:7]
    assert all(torch.equal(a, b) for a, b in zip(batches, expected, strict=True))
    full = data.step_batches(10, 4, 5, seed=3, drop_last=True)
    assert [len(b) for b in full] == [4] * 5
    epoch = torch.cat(full[:2])
    assert len(torch.unique(epoch)) == 8  # without replacement within an epoch
    assert [len(b) for b in data.step_batches(3, 32, 4)] == [3] * 4  # full batches of n


# --- an image folder on disk (chapter 3.3) -----------------------------------------------------


def test_png_folder_round_trip_matches_torchvision_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 5, 7), dtype=torch.uint8, generator=g)
    labels = torch.tensor([2, 0, 1] * 4)
    paths = data.write_png_folder(images, labels, tmp_path)
    assert len(paths) == 12 and all(
        p.parent.name == str(int(c)) for p, c in zip(paths, labels))
    folder = data.PNGFolder(tmp_path)
    reference = ImageFolder(str(tmp_path))
    assert folder.class_to_idx == reference.class_to_idx
    assert folder.samples == reference.samples
    for path, label in folder.samples:  # lossless: the bytes written are the pixels read
        index = int(path.rsplit("/", 1)[-1].split(".")[0])
        image, read_label = folder[folder.samples.index((path, label))]
        assert read_label == labels[index].item()
        assert torch.equal((image * 255).round().to(torch.uint8), images[index])
    gray = data.write_png_folder(torch.rand(3, 1, 4, 4), torch.tensor([0, 0, 1]), tmp_path / "g")
    assert data.PNGFolder(tmp_path / "g", transform=lambda t: t * 0)[0][0].shape == (1, 4, 4)
    assert len(gray) == 3


def test_png_folder_works_with_worker_processes(tmp_path):
    from torch.utils.data import DataLoader

    images = torch.rand(8, 1, 6, 6)
    data.write_png_folder(images, torch.arange(8) % 2, tmp_path)
    folder = data.PNGFolder(tmp_path)
    in_process = torch.cat([x for x, _ in DataLoader(folder, batch_size=3)])
    workers = torch.cat([x for x, _ in DataLoader(folder, batch_size=3, num_workers=2)])
    assert torch.equal(in_process, workers) and in_process.shape == (8, 1, 6, 6)


# --- photos and MNIST-1D (chapter 3.3) -------------------------------------------------------


def test_sample_photo_is_sklearns_image():
    photo = load_sample_photo("flower.jpg")
    ref = load_sample_image("flower.jpg")
    assert photo.shape == (3, *ref.shape[:2]) and photo.dtype == torch.float32
    assert torch.allclose(photo.permute(1, 2, 0) * 255, torch.tensor(ref, dtype=torch.float32))


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


# --- bad arguments of the functions added for chapter 3.3 --------------------------------------


def _split(n=10):
    return data.Split(torch.randn(n, 2), torch.arange(n) % 2)


@pytest.mark.parametrize("call, error", [
    (lambda: data.batch_loader(_split(), persistent_workers=True), ValueError),
    (lambda: data.batch_loader(_split(), prefetch_factor=2), ValueError),
    (lambda: data.batch_loader(_split(), num_workers=1, prefetch_factor=0), ValueError),
    (lambda: data.batch_loader(_split(), num_workers=1, persistent_workers=1), TypeError),
    (lambda: data.class_subsample_indices(torch.arange(4) % 2, {5: 0.5}), ValueError),
    (lambda: data.class_subsample_indices(torch.arange(4) % 2, {1: 0.0}), ValueError),
    (lambda: data.class_subsample_indices(torch.arange(4) % 2, [0.5]), TypeError),
    (lambda: data.class_weights(torch.rand(4)), TypeError),
    (lambda: data.balanced_loader(_split(), steps=0), ValueError),
    (lambda: data.step_batches(0, 8, 8), ValueError),
    (lambda: data.step_batches(3, 8, 8, drop_last=True), ValueError),
    (lambda: data.write_png_folder(torch.rand(2, 2, 4, 4), torch.arange(2), "unused"),
     ValueError),
    (lambda: data.write_png_folder(torch.rand(2, 1, 4, 4), torch.arange(3), "unused"),
     ValueError),
    (lambda: data.PNGFolder(123), TypeError),
    (lambda: data.write_png_folder(torch.rand(1, 1, 2, 2), torch.arange(1), "unused",
                                   compress_level=10), ValueError),
])  # fmt: skip
def test_bad_arguments_of_the_new_functions_fail_in_the_house_form(call, error):
    with pytest.raises(error, match="must be"):
        call()


def test_png_folder_refuses_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="root must be"):
        data.PNGFolder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="root must"):
        data.PNGFolder(tmp_path)
