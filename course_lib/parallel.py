"""Parallel computing (chapter 3.4.2): threads on one CPU, devices, the memory a training step
needs (activations saved for backward, peak allocation), and data-parallel training over several
processes with ``DistributedDataParallel`` (Li et al. 2020) or FSDP2's ``fully_shard``, started
by ``torchrun``, on any number of processes and resumable from a checkpoint.

Data parallelism in one sentence: every process holds a full copy of the model, takes its own
slice of each global batch, computes gradients on it, and the processes *average* their
gradients (an all-reduce) before every optimizer step, so all copies stay identical and the step
equals the single-process step on the whole global batch.

Run the entry point of this module on 2 CPU processes with::

    torchrun --nnodes=1 --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=localhost:0 \\
        -m course_lib.parallel --epochs 2 --out ddp.pt

(add ``--max-restarts=1`` and ``--checkpoint ck.pt`` to survive a failed worker).

``torchrun`` starts the processes and gives each one ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous address in its environment; gloo is the backend on CPU, nccl on CUDA GPUs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from course_lib.train import fit, load_checkpoint, save_checkpoint

__all__ = [
    "DistContext",
    "available_devices",
    "fsdp2_available",
    "init_distributed",
    "main",
    "num_threads",
    "peak_memory_bytes",
    "run_torchrun",
    "saved_tensor_bytes",
    "select_device",
    "thread_scaling",
    "torchrun_command",
    "train_data_parallel",
]


# --- threads on one machine ------------------------------------------------------------------


@contextmanager
def num_threads(n: int) -> Iterator[int]:
    """Run the ``with`` block with ``torch.set_num_threads(n)``, then restore the old value.

    PyTorch splits one large operation (a matrix product, a convolution) over ``n`` CPU threads:
    *intra-op* parallelism. More threads help only when each operation is big enough to share
    out, and never beyond the number of physical cores.
    """
    _checks.positive_int("n", n)
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


# --- memory on one device ----------------------------------------------------------------------


def saved_tensor_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs (its
    forward pass): the *activations* that activation checkpointing and mixed precision shrink.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``: every tensor the forward pass
    packs is counted once per storage (views of one tensor count once), and tensors that share
    storage with ``exclude`` (pass ``model.parameters()``: weights are saved by reference, not
    copied) are left out. Exact and deterministic, on any device.
    """
    _checks.function("fn", fn, "fn() -> anything")
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(seen.values())


def peak_memory_bytes(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak memory that ``fn()`` allocates on ``device`` above what was allocated before it.

    On CUDA the caching allocator's own count (``torch.cuda.max_memory_allocated``). On the CPU
    ``torch.profiler`` with ``profile_memory=True`` records the bytes every operator allocates
    and frees; the running sum of those records, in the order the operators started, peaks at
    the value returned (allocations made and freed inside one operator are netted, so a
    kernel's scratch space is not seen). Memory allocated before ``fn`` and freed during it is
    not counted: keep gradients allocated (``zero_grad(set_to_none=False)`` or a warm-up call).
    """
    _checks.function("fn", fn, "fn() -> anything")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device}")
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's start/stop lines on stderr
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


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
    timeout_s = _checks.positive("timeout_s", timeout_s)
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
        timeout = timedelta(seconds=timeout_s)
        # The store torchrun's processes meet in outlives a restart (--max-restarts), and the
        # keys the previous attempt's processes wrote (e.g. their gloo addresses) are still in
        # it: a restarted rank could read a dead peer's address. A prefix per attempt keeps
        # the attempts apart.
        store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"course_lib/attempt_{attempt}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=timeout)  # fmt: skip
    return DistContext(rank, world_size, local_rank, device, backend)


class _EpochLoader:
    """A ``DataLoader`` over a ``DistributedSampler`` that calls ``sampler.set_epoch(e)`` at
    the start of every pass, so each epoch draws a new permutation, the same on every rank.
    ``epoch`` is the next epoch to run (a resumed job starts past 0)."""

    def __init__(self, loader: DataLoader, sampler: DistributedSampler, epoch: int = 0) -> None:
        self.loader, self.sampler, self.epoch = loader, sampler, epoch

    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def fsdp2_available() -> bool:
    """Whether this PyTorch has FSDP2's public ``torch.distributed.fsdp.fully_shard``
    (PyTorch >= 2.6; 2.4 and 2.5 had it only as the private ``_composable.fsdp``)."""
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def _is_sharded(model: nn.Module) -> bool:
    """A model sharded with FSDP2's ``fully_shard`` (its class gains ``FSDPModule``)."""
    if not fsdp2_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (its checkpoint loads into any world size)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


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
    checkpoint: str | Path | None = None,
    **fit_options,
) -> list[float]:
    """Train with plain SGD on this process's share of every global batch, with
    :func:`course_lib.train.fit`; return the loss of each global batch (averaged over all
    processes).

    A ``DistributedSampler`` shuffles the indices with ``seed + epoch`` (the same permutation on
    every rank), drops its last ``len(dataset) % world_size`` indices (``drop_last=True``: other
    ones every epoch, and no sample is repeated to pad the shares) and gives rank ``r`` every
    ``world_size``-th index starting at ``r``; each rank then takes
    ``global_batch_size / world_size`` of them per step. Any ``len(dataset) >= world_size`` works,
    so the same script runs on any number of processes. With ``world_size > 1`` the model must be
    wrapped in ``DistributedDataParallel`` (its backward pass all-reduces the gradients,
    ``g = (1/W) Σ_r g_r``) or sharded with FSDP2's ``fully_shard`` (which reduce-scatters them):
    with equal local batches that is the gradient of the mean loss over the global batch, so
    the run matches one process on the same global batches.
    ``world_size=1`` is ordinary single-process training on the same global batches.

    ``checkpoint`` (a path): resume from it if it exists, and after every epoch rank 0 saves
    the weights, the optimizer state, the epoch and the losses so far there with
    :func:`course_lib.train.save_checkpoint` (atomic: a crash mid-write leaves the previous
    one) while the other ranks wait at a barrier. ``torchrun --max-restarts`` restarts failed
    workers *from scratch*; with a checkpoint they continue from the last finished epoch, and
    the result equals an uninterrupted run. (Not for FSDP2, whose weights are sharded: use
    ``torch.distributed.checkpoint`` there.)
    ``fit_options`` (e.g. ``after_step``) are passed on to ``fit``. The per-step losses are
    averaged over the ranks with one all-reduce per epoch, not one per step.
    """
    _checks.module("model", model)
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset must be a map-style Dataset (with __len__ and __getitem__), "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError("dataset must hold at least one sample, got an empty dataset")
    epochs = _checks.positive_int("epochs", epochs)
    global_batch_size = _checks.positive_int("global_batch_size", global_batch_size)
    world_size = _checks.positive_int("world_size", world_size)
    lr = _checks.positive("lr", lr)
    rank = _checks.integer("rank", rank, 0, world_size - 1)
    _checks.instance("checkpoint", checkpoint, (str, os.PathLike), "a str or os.PathLike",
                     allow_none=True)  # fmt: skip
    if global_batch_size % world_size:
        raise ValueError(
            f"global_batch_size must be divisible by world_size={world_size}, "
            f"got {global_batch_size}"
        )
    if len(dataset) < world_size:
        raise ValueError(
            f"dataset must hold at least world_size={world_size} samples (one per process), "
            f"got {len(dataset)}"
        )
    distributed = world_size > 1
    sharded = _is_sharded(model)
    if distributed and not (isinstance(model, nn.parallel.DistributedDataParallel) or sharded):
        raise TypeError(
            "model must be wrapped in DistributedDataParallel (or sharded with fully_shard) "
            f"when world_size > 1, got {type(model).__name__}"
        )
    if checkpoint is not None and sharded:
        raise ValueError(
            "checkpoint must be None for an FSDP2 model (each rank holds a shard: save it "
            "with torch.distributed.checkpoint), got a path"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    loader = DataLoader(dataset, batch_size=global_batch_size // world_size, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    fit_options.setdefault("progress", False)
    loss_fn = nn.functional.cross_entropy
    losses: list[float] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        extra = load_checkpoint(checkpoint, _unwrapped(model), optimizer)
        start, losses = int(extra["epoch"]), list(extra["losses"])
    batches = _EpochLoader(loader, sampler, start)
    # One fit call for all epochs, or one per epoch when each epoch ends with a checkpoint.
    chunks = [epochs - start] if checkpoint is None else [1] * (epochs - start)
    for chunk in (c for c in chunks if c > 0):
        history = fit(model, batches, None, optimizer, loss_fn, chunk, device, **fit_options)
        step_losses = torch.tensor(history["step_loss"], device=device)
        if distributed:
            dist.all_reduce(step_losses, op=dist.ReduceOp.SUM)  # gradients were averaged per step
            step_losses /= world_size
        losses += step_losses.tolist()
        if checkpoint is not None:
            if rank == 0:
                save_checkpoint(checkpoint, _unwrapped(model), optimizer,
                                epoch=batches.epoch, losses=losses)  # fmt: skip
            if distributed:
                dist.barrier()  # nobody runs ahead of a checkpoint that is not written yet
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
    parser.add_argument("--examples", type=int, default=None,
                        help="train on the first N training examples (default: all 1077)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: best available)")
    parser.add_argument("--out", type=Path, default=None, help="rank 0 saves the result here")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="resume from this file if it exists; rank 0 saves it every epoch")
    parser.add_argument(
        "--fail-on-rank", type=int, default=None,
        help="this rank raises once, in the first attempt (tests; see --fail-at-step)",
    )  # fmt: skip
    parser.add_argument("--fail-at-step", type=int, default=1,
                        help="the optimizer step after which --fail-on-rank raises")
    return parser.parse_args(argv)


class _FailOnce:
    """``--fail-on-rank``: raise after step ``at_step`` of the *first* attempt only
    (``TORCHELASTIC_RESTART_COUNT`` is 0), so that a restarted job can succeed."""

    def __init__(self, at_step: int) -> None:
        self.at_step, self.steps = at_step, 0

    def __call__(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps == self.at_step and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            raise RuntimeError(
                f"simulated failure on rank {os.environ.get('RANK', '?')} after step {self.steps}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``torchrun ... -m course_lib.parallel``: train ``MLP(64 → hidden → 10)``
    with DDP on the training part of the sklearn digits (any number of processes: the sampler
    drops the ``N mod world_size`` remainder); rank 0 saves ``{"state_dict", "losses",
    "world_size", "train_seconds", "restart_count", "resumed_from_epoch"}`` to ``--out``.

    Each rank seeds its model *differently* (``seed + rank``) on purpose: it is DDP, which
    broadcasts rank 0's parameters and buffers when it wraps the model, that makes the replicas
    start equal, not the seed. With ``--checkpoint`` a job restarted by ``torchrun
    --max-restarts`` resumes from the last finished epoch. ``train_seconds`` times the training
    loop inside the processes, without the interpreter start-ups."""
    from course_lib.data import load_digits_split
    from course_lib.models import MLP

    args = _parse(argv)
    ctx = init_distributed(args.device)
    try:
        train = load_digits_split(seed=args.seed).train
        X, y = (train.X, train.y) if args.examples is None else (
            train.X[: args.examples], train.y[: args.examples])  # fmt: skip
        torch.manual_seed(args.seed + ctx.rank)  # different on purpose: DDP broadcasts rank 0's
        model = MLP(hidden=tuple(args.hidden)).to(ctx.device)
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )
        resumed = 0
        if args.checkpoint is not None and args.checkpoint.exists():
            resumed = int(torch.load(args.checkpoint, weights_only=True)["extra"]["epoch"])
        start = time.perf_counter()
        losses = train_data_parallel(
            ddp,
            TensorDataset(X, y),
            epochs=args.epochs,
            global_batch_size=args.global_batch_size,
            lr=args.lr,
            seed=args.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            device=ctx.device,
            checkpoint=args.checkpoint,
            after_step=_FailOnce(args.fail_at_step) if args.fail_on_rank == ctx.rank else None,
        )
        seconds = time.perf_counter() - start
        if ctx.rank == 0 and args.out is not None:
            result = {
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "losses": losses,
                "world_size": ctx.world_size,
                "train_seconds": seconds,
                "restart_count": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
                "resumed_from_epoch": resumed,
            }
            torch.save(result, args.out)
    finally:
        dist.destroy_process_group()
    return 0


# --- launching -------------------------------------------------------------------------------


def torchrun_command(
    target: str | Path,
    args: Sequence[str] = (),
    nproc: int = 2,
    module: bool = False,
    max_restarts: int = 0,
) -> list[str]:
    """The command that starts ``nproc`` processes of ``target`` on this machine with torchrun.

    ``--rdzv-backend=c10d --rdzv-endpoint=localhost:0`` lets the rendezvous pick a free port, so
    several jobs never collide. For several machines, run the same command on each with
    ``--nnodes=N`` and a shared ``--rdzv-endpoint=HOST:PORT`` and ``--rdzv-id``.
    ``module=True`` runs ``target`` as ``python -m target``. ``max_restarts``: how many times
    torchrun restarts all workers after one fails (they restart from scratch: the script must
    resume from its own checkpoint, as :func:`train_data_parallel` does with ``checkpoint``).
    """
    _checks.positive_int("nproc", nproc)
    max_restarts = _checks.integer("max_restarts", max_restarts, 0)
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
        f"--max-restarts={max_restarts}",
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
    max_restarts: int = 0,
) -> subprocess.CompletedProcess:
    """Run :func:`torchrun_command` and wait (at most ``timeout_s`` seconds); return the
    completed process (``returncode``, ``stdout``, ``stderr``). Each child gets
    ``OMP_NUM_THREADS=threads_per_process`` (torchrun itself sets 1 when the variable is unset,
    with a warning; setting it says so explicitly and overrides a value inherited from the
    shell), so that ``nproc`` processes do not oversubscribe the cores. On timeout torchrun
    is told to stop (SIGTERM, which it passes on to its workers), then killed if need be, and
    ``subprocess.TimeoutExpired`` is raised: nothing is left hanging."""
    _checks.positive_int("threads_per_process", threads_per_process)
    timeout_s = _checks.positive("timeout_s", timeout_s)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process)}
    command = torchrun_command(target, args, nproc=nproc, module=module,
                               max_restarts=max_restarts)
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
