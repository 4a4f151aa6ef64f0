"""course_lib.parallel: threads, and DDP / FSDP2 under torchrun against plain single-process SGD,
on any number of processes and across a restart from a checkpoint (chapter 3.4.2)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

from course_lib import parallel
from course_lib.data import load_digits_split
from course_lib.models import MLP

ROOT = Path(__file__).resolve().parents[1]

EPOCHS, GLOBAL_BATCH, LR, SEED, HIDDEN = 2, 64, 0.1, 0, (32,)


def reference_sgd(X, y, epochs, global_batch, lr, seed, hidden, world_size=1):
    """Plain single-process SGD over consecutive chunks of the permutation that PyTorch's
    DistributedSampler draws for epoch e (seed + e), without its last ``len % world_size``
    entries (what ``drop_last=True`` leaves out on ``world_size`` processes); written without
    course_lib.parallel."""
    torch.manual_seed(seed)
    model = MLP(hidden=hidden)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    dataset = TensorDataset(X, y)
    losses = []
    for epoch in range(epochs):
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        order = order[: len(order) - len(order) % world_size]
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
    assert len(y) == 1077  # odd, and 1000 (used below) is not a multiple of 3: remainders dropped
    return X, y


# --- threads -----------------------------------------------------------------------------------


def test_num_threads_sets_and_restores():
    before = torch.get_num_threads()
    with parallel.num_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be an int >= 1"):
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


# --- memory ------------------------------------------------------------------------------------


def test_peak_memory_bytes_follows_allocations_and_frees():
    def allocate():
        a = torch.empty(1 << 20, dtype=torch.uint8)
        b = torch.empty(2 << 20, dtype=torch.uint8)
        del a
        c = torch.empty(1 << 20, dtype=torch.uint8)  # reuses a's room: peak stays 3 MiB
        return b, c

    assert parallel.peak_memory_bytes(allocate) == 3 << 20
    assert parallel.peak_memory_bytes(lambda: None) == 0


def test_saved_tensor_bytes_counts_activations_once_and_skips_weights():
    layer = nn.Linear(100, 50)
    x = torch.randn(8, 100)
    # addmm saves its input (8x100); relu saves its output (8x50); the weight is excluded
    counted = parallel.saved_tensor_bytes(lambda: layer(x).relu().sum(), layer.parameters())
    assert counted == (8 * 100 + 8 * 50) * 4
    x_grad = x.clone().requires_grad_()  # its gradient needs the weight: saved by reference
    assert parallel.saved_tensor_bytes(lambda: layer(x_grad).relu().sum(),
                                       layer.parameters()) == counted  # fmt: skip
    assert parallel.saved_tensor_bytes(lambda: layer(x_grad).relu().sum()) == counted + 50 * 100 * 4
    with torch.no_grad():
        assert parallel.saved_tensor_bytes(lambda: layer(x)) == 0


def test_activation_checkpointing_saves_memory_and_keeps_gradients():
    from torch.utils.checkpoint import checkpoint_sequential

    torch.manual_seed(0)
    deep = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(32, 32), nn.GELU())])
    x = torch.randn(16, 32)
    plain = parallel.saved_tensor_bytes(lambda: deep(x), deep.parameters())
    ckpt = parallel.saved_tensor_bytes(
        lambda: checkpoint_sequential(deep, 4, x, use_reentrant=False), deep.parameters())
    assert plain == 16 * 16 * 32 * 4  # 2 saved activations per layer
    assert ckpt < plain / 2


def test_gpu_check_without_a_gpu_says_so_and_succeeds():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "tools/gpu_check.py"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no CUDA GPU on this machine" in run.stdout and "skipped all" in run.stdout


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
    with pytest.raises(ValueError, match="dataset must hold at least world_size=2 samples"):
        parallel.train_data_parallel(MLP(), TensorDataset(*data[:1]), world_size=2, **kwargs)
    with pytest.raises(TypeError, match="checkpoint must be a str or os.PathLike"):
        parallel.train_data_parallel(MLP(), data, checkpoint=3, **kwargs)
    with pytest.raises(ValueError, match="rank"):
        parallel.train_data_parallel(MLP(), data, rank=1, **kwargs)
    with pytest.raises(ValueError, match="lr"):
        parallel.train_data_parallel(MLP(), data, **{**kwargs, "lr": 0})


def test_checkpoint_resumes_where_an_interrupted_run_stopped(tmp_path, digits_train):
    """An in-process failure in epoch 2, then a second call with the same checkpoint: the final
    weights and the loss curve equal those of a run that was never interrupted."""
    X, y = digits_train
    data = TensorDataset(X, y)
    kwargs = {"epochs": 3, "global_batch_size": GLOBAL_BATCH, "lr": LR, "seed": SEED}
    torch.manual_seed(SEED)
    uninterrupted = MLP(hidden=HIDDEN)
    ref_losses = parallel.train_data_parallel(uninterrupted, data, **kwargs)

    steps_per_epoch = math.ceil(len(y) / GLOBAL_BATCH)
    calls = []

    def fail_in_epoch_two(model):
        calls.append(1)
        if len(calls) == steps_per_epoch + 3:
            raise RuntimeError("crash")

    path = tmp_path / "ck.pt"
    torch.manual_seed(SEED)
    model = MLP(hidden=HIDDEN)
    with pytest.raises(RuntimeError, match="crash"):
        parallel.train_data_parallel(model, data, checkpoint=path, after_step=fail_in_epoch_two,
                                     **kwargs)  # fmt: skip
    saved = torch.load(path, weights_only=True)["extra"]
    assert saved["epoch"] == 1 and len(saved["losses"]) == steps_per_epoch
    torch.manual_seed(SEED + 1)  # a fresh process: other initial weights, replaced on resume
    restarted = MLP(hidden=HIDDEN)
    losses = parallel.train_data_parallel(restarted, data, checkpoint=path, **kwargs)
    assert losses == ref_losses
    for p, q in zip(restarted.parameters(), uninterrupted.parameters(), strict=True):
        assert torch.equal(p, q)
    # a finished run only reloads: nothing left to train
    assert parallel.train_data_parallel(MLP(hidden=HIDDEN), data, checkpoint=path,
                                        **kwargs) == ref_losses  # fmt: skip


def test_fsdp2_available_checks_the_public_api(monkeypatch):
    assert parallel.fsdp2_available() is hasattr(torch.distributed.fsdp, "fully_shard")
    monkeypatch.setitem(sys.modules, "torch.distributed.fsdp", types.ModuleType("old_fsdp"))
    assert parallel.fsdp2_available() is False


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
    assert "--nnodes=1" in cmd and "--nproc_per_node=2" in cmd and "--max-restarts=0" in cmd
    assert "--rdzv-endpoint=localhost:0" in cmd and cmd[-3:] == ["train.py", "--epochs", "3"]
    assert "--max-restarts=1" in parallel.torchrun_command("train.py", max_restarts=1)


# --- torchrun with 2 and 3 processes -----------------------------------------------------------


def _compare_with_reference(result, X, y, epochs, world_size):
    ref_model, ref_losses = reference_sgd(X, y, epochs, GLOBAL_BATCH, LR, SEED, HIDDEN,
                                          world_size)  # fmt: skip
    state = result["state_dict"]
    diffs = [(state[k] - v).abs().max().item() for k, v in ref_model.state_dict().items()]
    assert max(diffs) <= 1e-5, diffs
    assert len(result["losses"]) == len(ref_losses)
    assert max(abs(a - b) for a, b in zip(result["losses"], ref_losses, strict=True)) <= 1e-4


@pytest.mark.slow
def test_ddp_two_processes_equals_single_process(tmp_path, digits_train):
    out = tmp_path / "ddp.pt"
    args = ["--epochs", EPOCHS, "--global-batch-size", GLOBAL_BATCH, "--lr", LR, "--seed", SEED,
            "--hidden", *HIDDEN, "--device", "cpu", "--out", out]  # fmt: skip
    run = parallel.run_torchrun("course_lib.parallel", args, nproc=2, module=True, timeout_s=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["world_size"] == 2 and result["restart_count"] == 0
    # 1077 examples: one left out per epoch; the ranks seeded differently, DDP broadcast rank 0's
    _compare_with_reference(result, *digits_train, EPOCHS, world_size=2)


@pytest.mark.slow
def test_the_same_script_runs_unchanged_on_three_processes(tmp_path, digits_train):
    """Finding 1 of issue 19: 1000 examples on 3 processes (1000 = 3 * 333 + 1) need no
    trimming by the caller; the sampler drops one example per epoch."""
    out, examples, global_batch = tmp_path / "ddp3.pt", 1000, 96  # 96 = 3 * 32
    args = ["--epochs", EPOCHS, "--global-batch-size", global_batch, "--lr", LR, "--seed", SEED,
            "--hidden", *HIDDEN, "--device", "cpu", "--examples", examples,
            "--out", out]  # fmt: skip
    run = parallel.run_torchrun("course_lib.parallel", args, nproc=3, module=True, timeout_s=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["world_size"] == 3
    X, y = digits_train
    ref_model, ref_losses = reference_sgd(X[:examples], y[:examples], EPOCHS, global_batch, LR,
                                          SEED, HIDDEN, world_size=3)  # fmt: skip
    state = result["state_dict"]
    diffs = [(state[k] - v).abs().max().item() for k, v in ref_model.state_dict().items()]
    assert max(diffs) <= 1e-5, diffs
    assert len(result["losses"]) == len(ref_losses) == EPOCHS * math.ceil(999 / global_batch)
    assert max(abs(a - b) for a, b in zip(result["losses"], ref_losses, strict=True)) <= 1e-4


@pytest.mark.slow
def test_a_worker_that_fails_once_resumes_from_the_checkpoint(tmp_path, digits_train):
    """torchrun --max-restarts=1 restarts both workers after rank 1 fails in epoch 2; they load
    the epoch-1 checkpoint, and the final weights equal an uninterrupted run's."""
    epochs, out, checkpoint = 3, tmp_path / "resumed.pt", tmp_path / "ck.pt"
    steps_per_epoch = math.ceil((len(digits_train[1]) - 1) / GLOBAL_BATCH)
    args = ["--epochs", epochs, "--global-batch-size", GLOBAL_BATCH, "--lr", LR, "--seed", SEED,
            "--hidden", *HIDDEN, "--device", "cpu", "--checkpoint", checkpoint,
            "--fail-on-rank", 1, "--fail-at-step", steps_per_epoch + 5, "--out", out]  # fmt: skip
    run = parallel.run_torchrun("course_lib.parallel", args, nproc=2, module=True,
                                timeout_s=400, max_restarts=1)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "simulated failure on rank 1" in run.stdout + run.stderr
    result = torch.load(out, weights_only=True)
    assert result["restart_count"] == 1 and result["resumed_from_epoch"] == 1
    _compare_with_reference(result, *digits_train, epochs, world_size=2)


@pytest.mark.slow
def test_a_failing_process_makes_torchrun_fail_without_hanging(tmp_path):
    args = ["--epochs", 2, "--device", "cpu", "--fail-on-rank", 1, "--out", tmp_path / "x.pt"]
    start = time.monotonic()
    run = parallel.run_torchrun("course_lib.parallel", args, nproc=2, module=True, timeout_s=240)
    assert run.returncode != 0
    assert "simulated failure on rank 1" in run.stdout + run.stderr
    assert not (tmp_path / "x.pt").exists()
    assert time.monotonic() - start < 240


FSDP_SCRIPT = '''
import sys
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from course_lib.data import load_digits_split
from course_lib.models import MLP
from course_lib.parallel import init_distributed, train_data_parallel

ctx = init_distributed("cpu")
X, y = load_digits_split(seed=0).train
torch.manual_seed(0)  # FSDP2 shards what each rank initialized: the same seed everywhere
model = MLP(hidden=(32,))
for layer in model:
    if isinstance(layer, nn.Linear):
        fully_shard(layer)
fully_shard(model)
local = sum(p.to_local().numel() for p in model.parameters())
losses = train_data_parallel(model, TensorDataset(X, y), epochs=2, global_batch_size=64,
                             lr=0.1, rank=ctx.rank, world_size=ctx.world_size,
                             clip_grad_norm=1e6)
state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                             cpu_offload=True))
if ctx.rank == 0:
    torch.save({"state_dict": state, "losses": losses, "local": local}, sys.argv[1])
dist.destroy_process_group()
'''


@pytest.mark.slow
@pytest.mark.skipif(not parallel.fsdp2_available(), reason="FSDP2's fully_shard needs torch>=2.6")
def test_fsdp2_through_train_data_parallel_equals_single_process(tmp_path, digits_train):
    script, out = tmp_path / "fsdp.py", tmp_path / "fsdp.pt"
    script.write_text(FSDP_SCRIPT)
    run = parallel.run_torchrun(script, [out], nproc=2, timeout_s=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    full = sum(p.numel() for p in MLP(hidden=HIDDEN).parameters())
    assert result["local"] <= full // 2 + 32  # each rank holds about half
    result["world_size"] = 2
    _compare_with_reference(result, *digits_train, EPOCHS, world_size=2)
