"""course_lib.data: the offline datasets, splits, loaders and subsampling (chapters 1, 3.3).

Bad arguments are tested once, in ``tests/test_validation.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
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
