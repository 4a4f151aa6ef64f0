"""course_lib.parallel: threads, and DDP under torchrun against plain single-process SGD (3.4)."""

from __future__ import annotations

import math
import subprocess
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

from course_lib import parallel
from course_lib.data import load_digits_split
from course_lib.models import MLP

EPOCHS, GLOBAL_BATCH, LR, SEED, HIDDEN = 2, 64, 0.1, 0, (32,)


def reference_sgd(X, y, epochs, global_batch, lr, seed, hidden):
    """Plain single-process SGD over consecutive chunks of the permutation that PyTorch's
    DistributedSampler draws for epoch e (seed + e); written without course_lib.parallel."""
    torch.manual_seed(seed)
    model = MLP(hidden=hidden)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    dataset = TensorDataset(X, y)
    losses = []
    for epoch in range(epochs):
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        for start in range(0, len(order), global_batch):
            idx = order[start : start + global_batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return model, losses


@pytest.fixture(scope="module")
def digits_train():
    X, y = load_digits_split(seed=SEED).train
    usable = len(y) - len(y) % 2  # what the entry point keeps: equal shares for 2 processes
    return X[:usable], y[:usable]


# --- threads -----------------------------------------------------------------------------------


def test_num_threads_sets_and_restores():
    before = torch.get_num_threads()
    with parallel.num_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be >= 1"):
        with parallel.num_threads(0):
            pass
    with pytest.raises(TypeError, match="n must be an int"):
        with parallel.num_threads(1.5):
            pass


def test_thread_scaling_measures_each_count():
    result = parallel.thread_scaling(nn.Linear(16, 16), torch.randn(8, 16), (1, 2), 1, 5)
    assert sorted(result) == [1, 2]
    assert all(lat.median > 0 and lat.repeats == 5 for lat in result.values())
    with pytest.raises(ValueError, match="threads"):
        parallel.thread_scaling(nn.Linear(2, 2), torch.randn(1, 2), threads=())


def test_reexports_device_helpers():
    assert parallel.select_device("cpu") == torch.device("cpu")
    assert parallel.available_devices()[-1] == "cpu"


# --- training loop, in process -----------------------------------------------------------------


def test_single_process_training_equals_plain_sgd(digits_train):
    X, y = digits_train
    ref_model, ref_losses = reference_sgd(X, y, EPOCHS, GLOBAL_BATCH, LR, SEED, HIDDEN)
    torch.manual_seed(SEED)
    model = MLP(hidden=HIDDEN)
    losses = parallel.train_data_parallel(
        model, TensorDataset(X, y), epochs=EPOCHS, global_batch_size=GLOBAL_BATCH, lr=LR,
        seed=SEED,
    )  # fmt: skip
    assert len(losses) == EPOCHS * math.ceil(len(y) / GLOBAL_BATCH) == len(ref_losses)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_train_data_parallel_validates(digits_train):
    data = TensorDataset(*digits_train)
    kwargs = {"epochs": 1, "global_batch_size": 64, "lr": 0.1}
    with pytest.raises(TypeError, match="DistributedDataParallel"):
        parallel.train_data_parallel(MLP(), data, world_size=2, **kwargs)
    with pytest.raises(ValueError, match="divisible"):
        parallel.train_data_parallel(MLP(), data, **{**kwargs, "global_batch_size": 63},
                                     world_size=2)  # fmt: skip
    with pytest.raises(ValueError, match="len.dataset.=1077 must be divisible"):
        parallel.train_data_parallel(MLP(), TensorDataset(*load_digits_split(seed=SEED).train),
                                     world_size=2, **kwargs)  # fmt: skip
    with pytest.raises(ValueError, match="rank"):
        parallel.train_data_parallel(MLP(), data, rank=1, **kwargs)
    with pytest.raises(ValueError, match="lr"):
        parallel.train_data_parallel(MLP(), data, **{**kwargs, "lr": 0})


def test_init_distributed_outside_torchrun_says_what_to_do(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        parallel.init_distributed()


def test_run_torchrun_kills_a_job_that_overruns_its_timeout(tmp_path):
    script = tmp_path / "sleepy.py"
    script.write_text("import time\ntime.sleep(120)\n")
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        parallel.run_torchrun(script, nproc=1, timeout_s=8)
    assert time.monotonic() - start < 60


def test_torchrun_command_uses_free_port_and_one_node():
    cmd = parallel.torchrun_command("train.py", ["--epochs", 3], nproc=2)
    assert "--nnodes=1" in cmd and "--nproc_per_node=2" in cmd
    assert "--rdzv-endpoint=localhost:0" in cmd and cmd[-3:] == ["train.py", "--epochs", "3"]


# --- torchrun with 2 processes -----------------------------------------------------------------


@pytest.mark.slow
def test_ddp_two_processes_equals_single_process(tmp_path, digits_train):
    out = tmp_path / "ddp.pt"
    args = ["--epochs", EPOCHS, "--global-batch-size", GLOBAL_BATCH, "--lr", LR, "--seed", SEED,
            "--hidden", *HIDDEN, "--device", "cpu", "--out", out]  # fmt: skip
    run = parallel.run_torchrun("course_lib.parallel", args, nproc=2, module=True, timeout_s=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["world_size"] == 2
    ref_model, ref_losses = reference_sgd(*digits_train, EPOCHS, GLOBAL_BATCH, LR, SEED, HIDDEN)
    state = result["state_dict"]
    diffs = [(state[k] - v).abs().max().item() for k, v in ref_model.state_dict().items()]
    assert max(diffs) <= 1e-5, diffs
    assert len(result["losses"]) == len(ref_losses)
    assert max(abs(a - b) for a, b in zip(result["losses"], ref_losses, strict=True)) <= 1e-4


@pytest.mark.slow
def test_a_failing_process_makes_torchrun_fail_without_hanging(tmp_path):
    args = ["--epochs", 2, "--device", "cpu", "--fail-on-rank", 1, "--out", tmp_path / "x.pt"]
    start = time.monotonic()
    run = parallel.run_torchrun("course_lib.parallel", args, nproc=2, module=True, timeout_s=240)
    assert run.returncode != 0
    assert "simulated failure on rank 1" in run.stdout + run.stderr
    assert not (tmp_path / "x.pt").exists()
    assert time.monotonic() - start < 240
