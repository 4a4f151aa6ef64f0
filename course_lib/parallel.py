"""Parallel computing (chapter 3.4): threads on one CPU, devices, and data-parallel training
over several processes with ``DistributedDataParallel`` (Li et al. 2020), started by ``torchrun``.

Data parallelism in one sentence: every process holds a full copy of the model, takes its own
slice of each global batch, computes gradients on it, and the processes *average* their
gradients (an all-reduce) before every optimizer step, so all copies stay identical and the step
equals the single-process step on the whole global batch.

Run the entry point of this module on 2 CPU processes with::

    torchrun --nnodes=1 --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=localhost:0 \\
        -m course_lib.parallel --epochs 2 --out ddp.pt

``torchrun`` starts the processes and gives each one ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous address in its environment; gloo is the backend on CPU, nccl on CUDA GPUs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from course_lib import _checks, timing
from course_lib.device import available_devices, select_device
from course_lib.timing import Timing

__all__ = [
    "DistContext",
    "available_devices",
    "init_distributed",
    "main",
    "num_threads",
    "run_torchrun",
    "select_device",
    "thread_scaling",
    "torchrun_command",
    "train_data_parallel",
]


# --- threads on one machine ------------------------------------------------------------------


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@contextmanager
def num_threads(n: int) -> Iterator[int]:
    """Run the ``with`` block with ``torch.set_num_threads(n)``, then restore the old value.

    PyTorch splits one large operation (a matrix product, a convolution) over ``n`` CPU threads:
    *intra-op* parallelism. More threads help only when each operation is big enough to share
    out, and never beyond the number of physical cores.
    """
    _positive_int("n", n)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def thread_scaling(
    model: nn.Module,
    example_input: torch.Tensor,
    threads: Sequence[int] = (1, 2),
    warmup: int = 5,
    repeats: int = 30,
) -> dict[int, Timing]:
    """Latency of ``model(example_input)`` with each number of intra-op threads in ``threads``.

    Returns ``{n: Timing}`` in seconds, the thread counts timed in alternation (one sample of
    each per round, :func:`course_lib.timing.interleaved`) so that background load touches
    them alike; the *speed-up* of ``n`` threads is ``latency[1].median / latency[n].median``
    (ideal: ``n``).
    """
    _checks.module("model", model)
    _checks.tensor("example_input", example_input)
    threads = _checks.ints("threads", threads, 1)
    warmup = _checks.integer("warmup", warmup, 0)
    repeats = _checks.integer("repeats", repeats, 3)
    with timing.inference(model):
        comparison = timing.interleaved(
            {n: lambda: model(example_input) for n in threads}, rounds=repeats, warmup=warmup,
            num_threads={n: n for n in threads}, device=example_input.device,
        )  # fmt: skip
    return comparison.timings


# --- data-parallel training over processes ---------------------------------------------------


class DistContext(NamedTuple):
    """Where this process sits in a distributed job (set up by :func:`init_distributed`)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str


def init_distributed(device: str | torch.device | None = None, timeout_s: float = 300.0):
    """Join the process group that ``torchrun`` prepared; return a :class:`DistContext`.

    ``torchrun`` sets ``RANK`` (0..world_size-1 over all nodes), ``LOCAL_RANK`` (index on this
    node), ``WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``. On CUDA the process uses GPU
    ``LOCAL_RANK`` and the nccl backend; elsewhere the CPU and gloo (DDP does not run on Apple
    ``mps``). ``timeout_s`` bounds how long a collective waits for a peer that died.
    """
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not 0 < timeout_s < float("inf")
    ):
        raise ValueError(f"timeout_s must be a number > 0 (seconds), got {timeout_s!r}")
    required = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
    missing = [v for v in required if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"environment variables {missing} are not set: start this program with torchrun, "
            "e.g. `torchrun --nproc_per_node=2 script.py`"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = select_device(device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank, world_size, local_rank, device, backend)


def train_data_parallel(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: int,
    global_batch_size: int,
    lr: float,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    fail_after_first_step: bool = False,
) -> list[float]:
    """Train with plain SGD on this process's share of every global batch; return the loss of
    each global batch (averaged over all processes).

    A ``DistributedSampler`` shuffles the indices with ``seed + epoch`` (the same permutation on
    every rank) and gives rank ``r`` every ``world_size``-th index starting at ``r``; each rank
    then takes ``global_batch_size / world_size`` of them per step. With ``world_size > 1`` the
    model must be wrapped in ``DistributedDataParallel``, whose backward pass all-reduces the
    gradients, ``g = (1/W) Σ_r g_r``: with equal local batches that is the gradient of the mean
    loss over the global batch, so the run matches one process on the same global batches.
    ``len(dataset)`` must be divisible by ``world_size`` (otherwise the sampler would pad by
    repeating samples: trim the dataset).
    ``world_size=1`` is ordinary single-process training on the same global batches.

    ``fail_after_first_step`` makes this process raise after one step, to show that a failed
    worker stops the whole job (``torchrun`` exits non-zero) instead of hanging it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset must be a map-style Dataset (with __len__ and __getitem__), "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError("dataset must hold at least one sample, got an empty dataset")
    _positive_int("epochs", epochs)
    _positive_int("global_batch_size", global_batch_size)
    _positive_int("world_size", world_size)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size - 1}], got {rank!r}")
    if global_batch_size % world_size:
        raise ValueError(
            f"global_batch_size must be divisible by world_size={world_size}, "
            f"got {global_batch_size}"
        )
    if len(dataset) % world_size:
        raise ValueError(
            f"len(dataset)={len(dataset)} must be divisible by world_size={world_size}: "
            f"drop the last {len(dataset) % world_size} sample(s)"
        )
    distributed = world_size > 1
    if distributed and not isinstance(model, nn.parallel.DistributedDataParallel):
        raise TypeError(
            "model must be wrapped in DistributedDataParallel when world_size > 1, "
            f"got {type(model).__name__}"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    loader = DataLoader(dataset, batch_size=global_batch_size // world_size, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    losses = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a new permutation each epoch, the same on every rank
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()  # DDP: gradients are averaged over ranks here
            optimizer.step()
            logged = loss.detach().clone()
            if distributed:
                dist.all_reduce(logged, op=dist.ReduceOp.SUM)
                logged /= world_size
            losses.append(logged.item())
            if fail_after_first_step:
                raise RuntimeError(f"simulated failure on rank {rank}")
    return losses


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.parallel",
        description="Data-parallel training of an MLP on the sklearn digits (run with torchrun).",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--global-batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: best available)")
    parser.add_argument("--out", type=Path, default=None, help="rank 0 saves the result here")
    parser.add_argument(
        "--fail-on-rank", type=int, default=None, help="this rank raises after one step (tests)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``torchrun ... -m course_lib.parallel``: train ``MLP(64 → hidden → 10)``
    with DDP on the training part of the sklearn digits, trimmed to a multiple of the world
    size; rank 0 saves ``{"state_dict", "losses", "world_size"}`` to ``--out``. Every rank
    starts from the same seeded weights (DDP also broadcasts rank 0's weights when it wraps)."""
    from course_lib.data import load_digits_split
    from course_lib.models import MLP
    from course_lib.seed import seed_everything

    args = _parse(argv)
    ctx = init_distributed(args.device)
    try:
        seed_everything(args.seed)
        train = load_digits_split(seed=args.seed).train
        usable = len(train.y) - len(train.y) % ctx.world_size  # equal shares, no padding
        model = MLP(hidden=tuple(args.hidden)).to(ctx.device)
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )
        losses = train_data_parallel(
            ddp,
            TensorDataset(train.X[:usable], train.y[:usable]),
            epochs=args.epochs,
            global_batch_size=args.global_batch_size,
            lr=args.lr,
            seed=args.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            device=ctx.device,
            fail_after_first_step=args.fail_on_rank == ctx.rank,
        )
        if ctx.rank == 0 and args.out is not None:
            state = {k: v.cpu() for k, v in model.state_dict().items()}
            result = {"state_dict": state, "losses": losses, "world_size": ctx.world_size}
            torch.save(result, args.out)
    finally:
        dist.destroy_process_group()
    return 0


# --- launching -------------------------------------------------------------------------------


def torchrun_command(
    target: str | Path, args: Sequence[str] = (), nproc: int = 2, module: bool = False
) -> list[str]:
    """The command that starts ``nproc`` processes of ``target`` on this machine with torchrun.

    ``--rdzv-backend=c10d --rdzv-endpoint=localhost:0`` lets the rendezvous pick a free port, so
    several jobs never collide. For several machines, run the same command on each with
    ``--nnodes=N`` and a shared ``--rdzv-endpoint=HOST:PORT`` and ``--rdzv-id``.
    ``module=True`` runs ``target`` as ``python -m target``.
    """
    _positive_int("nproc", nproc)
    if not isinstance(target, (str, os.PathLike)) or not str(target):
        raise TypeError(
            f"target must be a script path or module name (str or Path), got {target!r}"
        )
    if isinstance(args, (str, bytes)) or not hasattr(args, "__iter__"):
        raise TypeError(
            f"args must be a sequence of command-line arguments, got {type(args).__name__}"
        )
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", f"--nproc_per_node={nproc}",
        "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0",
        "--max-restarts=0",
    ]  # fmt: skip
    if module:
        command.append("-m")
    return [*command, str(target), *map(str, args)]


def run_torchrun(
    target: str | Path,
    args: Sequence[str] = (),
    nproc: int = 2,
    module: bool = False,
    timeout_s: float = 300.0,
    threads_per_process: int = 1,
) -> subprocess.CompletedProcess:
    """Run :func:`torchrun_command` and wait (at most ``timeout_s`` seconds); return the
    completed process (``returncode``, ``stdout``, ``stderr``). Each child gets
    ``OMP_NUM_THREADS=threads_per_process`` so that ``nproc`` processes do not oversubscribe the
    cores. On timeout torchrun is told to stop (SIGTERM, which it passes on to its workers), then
    killed if need be, and ``subprocess.TimeoutExpired`` is raised: nothing is left hanging."""
    _positive_int("threads_per_process", threads_per_process)
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not 0 < timeout_s < float("inf")
    ):
        raise ValueError(f"timeout_s must be a number > 0 (seconds), got {timeout_s!r}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process)}
    command = torchrun_command(target, args, nproc=nproc, module=module)
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # SIGTERM lets torchrun stop its workers (they run in their own process groups);
            # if that does not end the job quickly, kill torchrun's whole group.
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
