"""course_lib.experiment: paired intervals against scipy.stats, arms tuned on validation and
scored on test, and vectorized MLP training against sequential course_lib.train.fit runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.data import Split, Splits, batch_loader, load_digits_split, make_loaders
from course_lib.experiment import (
    Arm,
    Comparison,
    Score,
    _batch_orders,
    assert_beats,
    compare,
    fit_arm,
    mlp_arm,
    paired_difference,
    t_critical,
    train_mlps,
)
from course_lib.models import MLP, SmallCNN
from course_lib.train import evaluate, fit


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is faster, and robust when other jobs share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_digits_split()


def subset(splits: Splits, n_train: int) -> Splits:
    return Splits(Split(splits.train.X[:n_train], splits.train.y[:n_train]), splits.val,
                  splits.test)  # fmt: skip


# --- paired differences -------------------------------------------------------------------


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 8, 19, 30, 101, 1000])
@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.99])
def test_t_critical_matches_scipy(dof, confidence):
    expected = scipy.stats.t.ppf((1 + confidence) / 2, dof)
    assert t_critical(confidence, dof) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 40])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_paired_difference_matches_scipy(n, confidence):
    rng = np.random.default_rng(n)
    b = rng.normal(0.9, 0.02, size=n)
    a = b + rng.normal(0.01, 0.01, size=n)
    diff = paired_difference(a, b, confidence)
    ci = scipy.stats.ttest_rel(a, b).confidence_interval(confidence)
    interval = scipy.stats.t.interval(confidence, n - 1, loc=np.mean(a - b),
                                      scale=scipy.stats.sem(a - b))  # fmt: skip
    assert diff.mean == pytest.approx(np.mean(a - b), abs=1e-15)
    assert diff.std == pytest.approx(np.std(a - b, ddof=1), rel=1e-12)
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
    assert (diff.low, diff.high) == pytest.approx(interval, rel=1e-9, abs=1e-12)
    assert (diff.n, diff.confidence) == (n, confidence)


def test_paired_difference_accepts_tensors_and_reads_well():
    diff = paired_difference(torch.tensor([0.9, 0.95, 0.93]), [0.88, 0.9, 0.9])
    assert diff.mean == pytest.approx(0.1 / 3)
    text = str(diff)
    assert "95% CI [" in text and "n=3" in text and f"{diff.low:+.4f}" in text


@pytest.mark.parametrize(
    "a, b, kwargs, error, match",
    [
        ([1, 2, 3], [1, 2], {}, ValueError, "same length"),
        ([1.0], [0.5], {}, ValueError, "at least 2 paired scores, got 1"),
        ([1, 2], [0, 1], {"confidence": 1.0}, ValueError, r"confidence must be a number in \(0,"),
        ([1, 2], [0, 1], {"confidence": 0}, ValueError, "confidence must be"),
        ([1, 2], [0, 1], {"confidence": True}, TypeError, "confidence must be"),
        ([1, float("nan")], [0, 1], {}, ValueError, "a must hold finite numbers"),
        ("ab", [0, 1], {}, TypeError, "a must be a 1-D sequence"),
        ([[1, 2]], [[0, 1]], {}, ValueError, "a must be a 1-D sequence"),
        (3.0, [0, 1], {}, TypeError, "a must be a 1-D sequence"),
    ],
)
def test_paired_difference_rejects_bad_input(a, b, kwargs, error, match):
    with pytest.raises(error, match=match):
        paired_difference(a, b, **kwargs)


def test_assert_beats_passes_only_beyond_noise():
    a, b = [0.95, 0.96, 0.94, 0.97, 0.95], [0.90, 0.92, 0.91, 0.93, 0.90]
    diff = assert_beats(a, b, "Adam", "SGD")
    assert diff.low > 0 and diff == paired_difference(a, b)
    with pytest.raises(AssertionError, match=r"SGD does not beat Adam .*CI \[-.*favours Adam"):
        assert_beats(b, a, "SGD", "Adam")
    noisy = [0.95, 0.89, 0.97, 0.88, 0.93]
    with pytest.raises(AssertionError, match=r"includes 0") as info:
        assert_beats(noisy, b, "noisy", "SGD")
    assert f"{paired_difference(noisy, b).low:+.4f}" in str(info.value)
    # lower is better (losses): A's losses below B's on every seed
    assert assert_beats(b, a, "A", "B", higher_is_better=False).high < 0
    with pytest.raises(AssertionError, match="lower is better"):
        assert_beats(a, b, higher_is_better=False)


# --- arms × seeds ---------------------------------------------------------------------------


def fake_run(seed: int, lr: float = 1.0) -> Score:
    """Validation prefers lr = 1, test would prefer lr = 2: the choice must use validation."""
    val = {0.5: 0.85, 1.0: 0.9, 2.0: 0.8, 3.0: float("nan")}[lr] + 0.001 * seed
    test = {0.5: 0.6, 1.0: 0.7, 2.0: 0.95, 3.0: float("nan")}[lr] + 0.002 * seed
    return Score(val, test)


def test_compare_chooses_on_validation_and_reports_test():
    result = compare({
        "tuned": Arm(fake_run, grid={"lr": [3.0, 2.0, 1.0, 0.5]}),
        "fixed": lambda seed: (0.5, 0.6 + 0.001 * seed),
    }, seeds=range(4))  # fmt: skip
    assert isinstance(result, Comparison) and list(result) == ["tuned", "fixed"]
    assert result.chosen("tuned") == {"lr": 1.0}  # NaN (diverged) and the test-better lr lose
    np.testing.assert_allclose(result["tuned"], [0.7, 0.702, 0.704, 0.706])
    np.testing.assert_allclose(result.results["tuned"].val, [0.9, 0.901, 0.902, 0.903])
    assert result.chosen("fixed") == {}
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["tuned", "fixed"]
    assert frame.loc["tuned", "chosen"] == "lr=1" and frame.loc["fixed", "chosen"] == "—"
    assert frame.loc["tuned", "test_mean"] == pytest.approx(0.703)
    assert frame.loc["tuned", "test_std"] == pytest.approx(np.std(result["tuned"], ddof=1))
    per_seed = result.to_frame(per_seed=True)
    assert list(per_seed.index) == [0, 1, 2, 3] and list(per_seed.columns) == ["tuned", "fixed"]
    tuning = result.tuning_frame()
    tuned = tuning[tuning.arm == "tuned"]
    assert len(tuning) == 5 and tuned.loc[tuned.chosen, "lr"].tolist() == [1.0]
    text = str(result)
    for part in ("tuned", "fixed", "lr=1", "0.7030 ±", "4 seeds", "validation"):
        assert part in text
    assert "edge" not in text and not frame.at_grid_edge.any()
    assert "| tuned | lr=1 |" in result._repr_markdown_()
    assert result.paired("tuned", "fixed") == paired_difference(result["tuned"], result["fixed"])
    assert result.assert_beats("tuned", "fixed").low > 0


def test_compare_lower_is_better_and_run_many():
    calls = []

    def run_many(seeds, points):
        calls.append((list(seeds), points))
        return [[fake_run(s, **p) for s in seeds] for p in points]

    arm = Arm(fake_run, grid={"lr": np.array([1.0, 2.0])}, run_many=run_many)
    result = compare({"A": arm}, seeds=[3, 5], higher_is_better=False)
    assert calls == [([3, 5], [{"lr": 1.0}, {"lr": 2.0}])]  # one call for the whole grid
    assert result.chosen("A") == {"lr": 2.0}  # lowest validation score wins
    assert result["A"].tolist() == pytest.approx([0.956, 0.96])
    assert result.results["A"].at_edge == ("lr",) and result.to_frame().at_grid_edge["A"]
    assert "lr=2 (edge)" in str(result) and "widen the grid" in str(result)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: compare({}), ValueError, "arms must hold at least one arm"),
        (lambda: compare([fake_run]), TypeError, "arms must be a dict"),
        (lambda: compare({"A": 3}), TypeError, r"arms\['A'\] must be callable"),
        (lambda: compare({"A": fake_run}, seeds=[0, 0]), ValueError, "seeds must be distinct"),
        (lambda: compare({"A": fake_run}, seeds=[-1]), ValueError, "seeds"),
        (lambda: compare({"A": lambda s: 0.5}), TypeError, r"must return Score\(val=..., test="),
        (lambda: compare({"A": lambda s: ("x", 1)}), TypeError, "got val='x'"),
        (lambda: Arm(fake_run, grid={"lr": []}), ValueError, r"grid\['lr'\] must be a non-empty"),
        (lambda: Arm(fake_run, grid={"lr": "0.1"}), TypeError, r"grid\['lr'\] must be a list"),
        (lambda: Arm("run"), TypeError, "run must be callable"),
        (lambda: compare({"A": Arm(fake_run, run_many=lambda s, p: [])}), ValueError,
         "run_many must return one row"),
    ],
)
def test_compare_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- vectorized training against sequential fit ----------------------------------------------

OPTIMIZERS = {
    "sgd momentum + wd": (
        dict(optimizer="sgd", lr=[0.1, 0.05, 0.2], momentum=0.9, weight_decay=[0.0, 1e-3, 1e-2]),
        lambda p, i: torch.optim.SGD(p, lr=[0.1, 0.05, 0.2][i], momentum=0.9,
                                     weight_decay=[0.0, 1e-3, 1e-2][i]),
    ),
    "sgd nesterov": (
        dict(optimizer="sgd", lr=0.1, momentum=[0.9, 0.5, 0.8], nesterov=True),
        lambda p, i: torch.optim.SGD(p, lr=0.1, momentum=[0.9, 0.5, 0.8][i], nesterov=True),
    ),
    "adam + L2": (
        dict(optimizer="adam", lr=[1e-3, 3e-3, 1e-2], weight_decay=[0.0, 1e-4, 0.0]),
        lambda p, i: torch.optim.Adam(p, lr=[1e-3, 3e-3, 1e-2][i],
                                      weight_decay=[0.0, 1e-4, 0.0][i]),
    ),
    "adamw": (
        dict(optimizer="adamw", lr=[1e-3, 3e-3, 1e-2]),
        lambda p, i: torch.optim.AdamW(p, lr=[1e-3, 3e-3, 1e-2][i]),
    ),
}  # fmt: skip


def sequential(splits, seed, make_optimizer, epochs, hidden=(32,), batch_size=64):
    """What a chapter writes: seed, build, the seed's loaders, course_lib.train.fit."""
    torch.manual_seed(seed)
    model = MLP(hidden=hidden)
    train, val, test = make_loaders(splits, batch_size, seed=seed)
    fit(model, train, val, make_optimizer(model.parameters()), F.cross_entropy, epochs, "cpu",
        progress=False)  # fmt: skip
    return model, evaluate(model, test, F.cross_entropy, "cpu")


def max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values())
    return max((p - q).abs().max().item() for p, q in pairs)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_first_steps_match_sequential_fit(digits, name):
    """64 training examples in batches of 64: epoch e is optimizer step e. Same seeds, same
    initialization and batches: the stacked update is torch.optim's."""
    kwargs, make = OPTIMIZERS[name]
    seeds = [0, 1, 2]
    for n_train, epochs, tol in ((64, 1, 1e-6), (150, 2, 1e-6)):  # 1 step; 6 steps, last small
        splits = subset(digits, n_train)
        run = train_mlps(splits, seeds, epochs=epochs, hidden=(32,), device="cpu", **kwargs)
        for k, seed in enumerate(seeds):
            model, _ = sequential(splits, seed, lambda p, k=k: make(p, k), epochs)
            assert max_difference(model, run.model(k)) <= tol, (name, n_train, seed)


def test_full_training_follows_sequential_runs(digits):
    """Three epochs on the whole digits split: parameters still agree closely and the test
    accuracies agree within noise (here: exactly, or within one example)."""
    seeds, lrs = [0, 1, 2], [1e-3, 3e-3, 3e-3]
    run = train_mlps(digits, seeds, lr=lrs, epochs=3, hidden=(64,), device="cpu")
    for k, seed in enumerate(seeds):
        model, test = sequential(digits, seed, lambda p, k=k: torch.optim.Adam(p, lr=lrs[k]), 3,
                                 hidden=(64,))  # fmt: skip
        assert max_difference(model, run.model(k)) < 1e-4
        assert abs(run.test_accuracy[k].item() - test["accuracy"]) <= 1 / len(digits.test.y)
        assert run.test_loss[k].item() == pytest.approx(test["loss"], abs=1e-4)
    assert run.history["val_accuracy"].shape == (3, 3) and run.history["train_loss"].shape == (3, 3)
    assert (run.history["train_loss"][:, -1] < run.history["train_loss"][:, 0]).all()
    assert run.test_accuracy.min() > 0.7
    assert "3 models" in repr(run) and "test_accuracy=" in repr(run)
    assert run.hparams[1] == {"lr": 3e-3, "momentum": 0.0, "weight_decay": 0.0}


def test_batch_orders_are_the_loaders_orders():
    n, batch_size = 150, 64
    split = Split(torch.arange(n), torch.arange(n))
    for seed in (0, 7):
        loader = batch_loader(split, batch_size, shuffle=True, seed=seed)
        expected = torch.stack([torch.cat([x for x, _ in loader]) for _ in range(3)])
        assert torch.equal(_batch_orders(n, batch_size, seed, 3), expected)


def test_train_mlps_leaves_the_global_rng_alone(digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_mlps(subset(digits, 64), [0, 1], epochs=1, hidden=(8,), device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_mlp_arm_batch_equals_single_runs_and_fit_arm(digits):
    """run_many (one vectorized batch for grid × seeds) agrees with run(seed, **hparams) one
    model at a time, and with the sequential fit_arm of the same configuration."""
    splits = subset(digits, 200)
    arm = mlp_arm(splits, optimizer="sgd", momentum=0.9, epochs=2, hidden=(16,),
                  grid={"lr": [0.01, 0.1]})  # fmt: skip
    table = arm.run_many([0, 1], arm.points())
    fitted = fit_arm(lambda: MLP(hidden=(16,)), splits, optimizer="sgd", momentum=0.9, epochs=2,
                     grid={"lr": [0.01, 0.1]})  # fmt: skip
    for point, row in zip(arm.points(), table):
        for seed, score in zip([0, 1], row):
            assert score == pytest.approx(arm.run(seed, **point), abs=1e-9)
            assert score == pytest.approx(fitted.run(seed, **point), abs=1 / 360 + 1e-9)


def test_compare_with_vectorized_and_sequential_arms(digits):
    """A chapter's comparison in a few lines; the CNN (BatchNorm-free or not, it does not
    stack) runs sequentially through fit_arm with the same interface."""
    splits = subset(digits, 300)
    images = load_digits_split(as_images=True)
    images = subset(images, 300)
    result = compare({
        "SGD": mlp_arm(splits, optimizer="sgd", epochs=3, hidden=(32,), grid={"lr": [0.03, 0.3]}),
        "Adam": mlp_arm(splits, epochs=3, hidden=(32,), grid={"lr": [1e-3, 1e-2]}),
        "CNN": fit_arm(SmallCNN, images, epochs=1, lr=3e-3),
    }, seeds=range(3))  # fmt: skip
    frame = result.to_frame()
    assert list(frame.index) == ["SGD", "Adam", "CNN"] and (frame.n_seeds == 3).all()
    assert result.chosen("Adam")["lr"] in (1e-3, 1e-2) and result.chosen("CNN") == {}
    assert result["Adam"].shape == (3,) and (result["Adam"] > 0.5).all()
    assert result.to_frame().loc["Adam", "test_mean"] == pytest.approx(result["Adam"].mean())


def test_grid_over_a_shape_key_runs_one_batch_per_value(digits):
    splits = subset(digits, 64)
    arm = mlp_arm(splits, epochs=1, grid={"hidden": [(8,), (16,)], "lr": [1e-3, 1e-2]})
    table = arm.run_many([0, 1], arm.points())
    assert [len(row) for row in table] == [2, 2, 2, 2]
    assert table[1][0] == pytest.approx(arm.run(0, hidden=(8,), lr=1e-2), abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"lr": [1e-3]}, ValueError, r"lr must be a number or a list of 2 numbers .*got 1"),
        ({"lr": -1.0}, ValueError, "lr must be a number > 0"),
        ({"lr": "fast"}, TypeError, "lr must be a number or a list"),
        ({"momentum": 0.9}, ValueError, "momentum must be 0 for optimizer='adam'"),
        ({"optimizer": "sgd", "nesterov": True}, ValueError, "nesterov=True needs"),
        ({"epochs": 0}, ValueError, "epochs must be an int >= 1"),
        ({"betas": (0.9,)}, ValueError, "betas must be a pair"),
        ({"hidden": (8,), "make_model": MLP}, ValueError, "not both"),
        ({"make_model": SmallCNN}, TypeError, "use fit_arm"),
        ({"make_model": lambda: nn.Sequential(nn.Linear(64, 10), nn.BatchNorm1d(10))},
         TypeError, "no BatchNorm"),
        ({"make_model": lambda: nn.Sequential(nn.Linear(64, 8), nn.Dropout(), nn.Linear(8, 10))},
         TypeError, "got a Dropout layer"),
    ],
)
def test_train_mlps_rejects_bad_input(digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        train_mlps(subset(digits, 64), [0, 1], **{"epochs": 1, "device": "cpu", **kwargs})


def test_train_mlps_rejects_bad_splits_and_mlp_arm_keys(digits):
    with pytest.raises(TypeError, match="splits must be a Splits"):
        train_mlps(digits.train, [0])
    with pytest.raises(ValueError, match="seeds"):
        train_mlps(digits, [])
    with pytest.raises(ValueError, match="must be one of"):
        mlp_arm(digits, learning_rate=0.1)
    with pytest.raises(ValueError, match="grid keys must not also be fixed"):
        mlp_arm(digits, lr=0.1, grid={"lr": [0.1]})
    with pytest.raises(TypeError, match="make_model must be callable"):
        fit_arm("MLP", digits)


def test_scores_and_model_accessors(digits):
    run = train_mlps(subset(digits, 64), [4, 5], epochs=1, hidden=(8,), device="cpu")
    scores = run.scores()
    assert len(scores) == len(run) == 2 and all(isinstance(s, Score) for s in scores)
    assert scores[0].test == pytest.approx(run.test_accuracy[0].item())
    assert run.scores("loss")[1].val == pytest.approx(run.val_loss[1].item())
    assert math.isclose(run.history["val_accuracy"][0, -1].item(), scores[0].val)
    with pytest.raises(ValueError, match="k must be an int in"):
        run.model(2)
