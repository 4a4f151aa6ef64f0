"""The one training loop, ``course_lib.train.fit``, and ``evaluate``: each test is written so
that a specific bug fails it (per-batch instead of per-example means, a scaled loss, a
schedule stepped at the wrong interval, the norm recorded after clipping, float16 without a
scaler, a host synchronisation per step)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import train
from course_lib.data import Split, batch_loader


def _data(n=250, features=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Split(X, y)


def _model(features=6, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes))


def _fit(model, loader, **kwargs):
    kwargs.setdefault("optimizer", torch.optim.SGD(model.parameters(), lr=0.1))
    optimizer = kwargs.pop("optimizer")
    epochs = kwargs.pop("epochs", 1)
    val = kwargs.pop("val_loader", None)
    return train.fit(model, loader, val, optimizer, F.cross_entropy, epochs, "cpu",
                     progress=False, **kwargs)  # fmt: skip


def test_evaluate_is_a_per_example_mean_with_a_smaller_last_batch():
    split, model = _data(250), _model()
    loader = batch_loader(split, batch_size=64, shuffle=False)  # 64, 64, 64, 58
    result = train.evaluate(model, loader, F.cross_entropy, "cpu")
    with torch.no_grad():
        logits = model(split.X)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, split.y).item(), rel=1e-6)
    expected_acc = (logits.argmax(1) == split.y).float().mean().item()
    assert result["accuracy"] == pytest.approx(expected_acc, abs=1e-7)
    batch_means = [F.cross_entropy(model(x), y).item() for x, y in loader]
    assert abs(result["loss"] - sum(batch_means) / len(batch_means)) > 1e-6  # they differ here


def test_evaluate_restores_train_mode_even_when_a_batch_raises():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        train.evaluate(model, batch_loader(_data(8), 4), F.cross_entropy, "cpu")
    assert model.training


def test_training_loss_is_the_hand_computed_epoch_mean():
    split, model = _data(250), _model()
    reference = copy.deepcopy(model)
    loader = batch_loader(split, batch_size=64, shuffle=False)  # the same batches twice
    history = _fit(model, loader)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    total, step_losses = 0.0, []
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(reference(x), y)
        loss.backward()
        opt.step()
        total += loss.item() * len(y)
        step_losses.append(loss.item())
    assert history["train_loss"][0] == pytest.approx(total / 250, rel=1e-6)
    assert history["step_loss"] == pytest.approx(step_losses, rel=1e-6)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_step_interval_schedule_records_the_lr_of_every_step():
    split, model = _data(128), _model()
    loader = batch_loader(split, batch_size=32)  # 4 steps per epoch
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / 6))
    history = _fit(model, loader, optimizer=opt, epochs=2, scheduler=warmup,
                   scheduler_interval="step")  # fmt: skip
    expected = [0.4 * min(1.0, (t + 1) / 6) for t in range(8)]
    assert history["lr"] == pytest.approx(expected)
    assert len(history["grad_norm"]) == len(history["step_loss"]) == 8


def test_epoch_interval_schedule_changes_lr_between_epochs_only():
    split, model = _data(128), _model()
    loader = batch_loader(split, batch_size=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = _fit(model, loader, optimizer=opt, epochs=3, scheduler=step)
    assert history["lr"] == pytest.approx([0.4] * 4 + [0.2] * 4 + [0.1] * 4)


def test_reduce_on_plateau_receives_the_validation_loss():
    split, model = _data(64), _model()
    loader = batch_loader(split, batch_size=32)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    # threshold=1 (relative): an improvement would have to remove all of the loss: never
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0,
                                                         threshold=1.0)  # fmt: skip
    history = _fit(model, loader, optimizer=opt, epochs=3, scheduler=plateau, val_loader=loader)
    assert history["lr"][-1] < history["lr"][0]


def test_grad_norm_is_recorded_before_clipping_and_clipping_matches_torch():
    split, model = _data(64), _model()
    reference = copy.deepcopy(model)
    loader = batch_loader(split, batch_size=64)
    history = _fit(model, loader, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                   clip_grad_norm=0.01)  # fmt: skip
    opt = torch.optim.SGD(reference.parameters(), lr=1.0)
    x, y = next(iter(loader))
    F.cross_entropy(reference(x), y).backward()
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.01)
    opt.step()
    assert norm > 0.01  # clipping was active
    assert history["grad_norm"][0] == pytest.approx(norm.item(), rel=1e-6)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_grad_norm_is_recorded_without_clipping_too():
    split, model = _data(64), _model()
    reference = copy.deepcopy(model)
    history = _fit(model, batch_loader(split, batch_size=64))
    F.cross_entropy(reference(split.X), split.y).backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()]))
    assert history["grad_norm"][0] == pytest.approx(norm.item(), rel=1e-6)


def _tiny_loss(model, inputs, targets):
    outputs = model(inputs)
    return 1e-9 * outputs.float().pow(2).sum(), outputs  # gradients far below fp16's range


def test_float16_uses_a_grad_scaler_so_tiny_gradients_survive():
    split = _data(32)
    model = _model()
    plain = copy.deepcopy(model)  # what fit did before: float16 autocast, no scaler
    with torch.autocast("cpu", dtype=torch.float16):
        loss, _ = _tiny_loss(plain, split.X, split.y)
    loss.backward()
    assert plain[0].weight.grad.abs().max() == 0  # underflow: the first layer learns nothing
    history = _fit(model, batch_loader(split, 32), amp_dtype=torch.float16, loss_hook=_tiny_loss)
    assert history["grad_norm"][0] > 0  # with the scaler the (unscaled) gradient is not zero
    assert history["skipped_steps"] == [0]


def test_float16_overflowing_steps_are_skipped_and_counted():
    split, model = _data(32), _model()
    before = copy.deepcopy(model.state_dict())

    def huge_loss(model, inputs, targets):
        outputs = model(inputs)
        return 1e3 * outputs.float().pow(2).sum(), outputs  # × 65536: inf in float16

    history = _fit(model, batch_loader(split, 32), amp_dtype=torch.float16, loss_hook=huge_loss)
    assert history["skipped_steps"] == [1]
    assert math.isinf(history["grad_norm"][0]) or math.isnan(history["grad_norm"][0])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the step was skipped


def test_bfloat16_trains_without_a_scaler():
    split, model = _data(64), _model()
    history = _fit(model, batch_loader(split, 32), epochs=3, amp_dtype=torch.bfloat16)
    assert history["skipped_steps"] == [0, 0, 0]
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_no_host_synchronisation_per_step(monkeypatch):
    """The number of ``.item()``/``.tolist()`` calls per epoch does not grow with the steps."""
    calls = {"n": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting(original):
        def wrapper(self, *args):
            calls["n"] += 1
            return original(self, *args)

        return wrapper

    monkeypatch.setattr(torch.Tensor, "item", counting(item))
    monkeypatch.setattr(torch.Tensor, "tolist", counting(tolist))
    counts = []
    for batch_size in (64, 8):  # 2 and 16 steps per epoch
        split, model = _data(128), _model()
        calls["n"] = 0
        _fit(model, batch_loader(split, batch_size), epochs=2, clip_grad_norm=1.0)
        counts.append(calls["n"])
    assert counts[0] == counts[1]


def test_early_stopping_restores_the_best_weights():
    split, model = _data(64), _model()
    loader = batch_loader(split, batch_size=16)
    steps = {"n": 0}

    def spoil_after_two_epochs(model):  # 4 steps per epoch; from epoch 3 on, blow up weights
        steps["n"] += 1
        if steps["n"] > 8:
            with torch.no_grad():
                model[2].weight.mul_(1.5)

    history = _fit(model, loader, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   epochs=6, val_loader=loader, restore_best=True,
                   after_step=spoil_after_two_epochs)  # fmt: skip
    best = history["best_epoch"][0]
    assert history["val_loss"][best - 1] == min(history["val_loss"])
    assert train.evaluate(model, loader, F.cross_entropy, "cpu")["loss"] == pytest.approx(
        min(history["val_loss"]), rel=1e-6
    )
    assert best == 2


def test_patience_stops_after_that_many_epochs_without_improvement():
    split, model = _data(64), _model()
    loader = batch_loader(split, batch_size=64)
    opt = torch.optim.SGD(model.parameters(), lr=1e-12)  # the loss never improves after epoch 1
    history = _fit(model, loader, optimizer=opt, epochs=10, val_loader=loader, patience=2)
    assert history["epoch"] == [1, 2, 3]
    assert history["best_epoch"] == [1]


def test_loss_hook_replaces_the_loss():
    split, model = _data(64), _model()
    seen = []

    def hook(model, inputs, targets):
        outputs = model(inputs)
        seen.append(len(targets))
        return F.cross_entropy(outputs, targets) * 0 + 3.0 + outputs.sum() * 0, outputs

    history = _fit(model, batch_loader(split, 32), loss_hook=hook)
    assert seen == [32, 32]
    assert history["train_loss"] == pytest.approx([3.0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scheduler_interval": "batch"}, ValueError, r"scheduler_interval must be one of"),
        ({"clip_grad_norm": 0}, ValueError, r"clip_grad_norm must be a number > 0"),
        ({"patience": 0}, ValueError, r"patience must be an int >= 1"),
        ({"restore_best": True}, ValueError, r"val_loader must be .* when patience or"),
        ({"loss_hook": 3}, TypeError, r"loss_hook must be None or callable"),
    ],
)
def test_fit_refuses_bad_options(kwargs, error, match):
    split, model = _data(8), _model()
    with pytest.raises(error, match=match):
        _fit(model, batch_loader(split, 4), **kwargs)
