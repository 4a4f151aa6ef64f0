"""The GPU-only checks of chapter 3.4.2, for anyone with an NVIDIA GPU: ``make gpu-check``.

Each check prints one summary line, ``PASS <name>: <what was measured>`` or
``FAIL <name>: <why>``; the exit status is 1 if any check failed. Without a CUDA GPU it says so
and exits 0 (there is nothing to check). The whole run takes well under 5 minutes on one GPU.

1. ``fp16+GradScaler``: float16 underflow of small gradients on CUDA, fixed by loss scaling, and
   ``train.fit(amp_dtype=torch.float16)`` training the digits MLP as well as float32.
2. ``nccl DDP``: ``torchrun -m course_lib.parallel`` on every GPU present, with nccl, against
   one process on the same global batches.
3. ``pinned overlap``: a host-to-device copy from pinned memory on a side stream overlaps with
   matrix products on the default stream (the prefetcher of the chapter).
4. ``torch.compile``: the chapter's written-out GELU and a small MLP, compiled with Inductor
   (Triton) on CUDA: same results as eager, speed reported.
5. ``2:4 sparsity``: ``torch.sparse.to_sparse_semi_structured`` on a 2:4-pruned float16 weight
   (the hardware-supported sparsity of chapter 3.2) against the dense product of the same
   masked weight, speed reported.
6. ``notebook 3.4.2``: the chapter itself, with its CUDA cells, under nbval.

    .venv/bin/python tools/gpu_check.py [--skip-notebook]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402


def _cuda_time(fn: Callable[[], object], repeats: int = 20) -> float:
    """Median seconds per call of ``fn`` on the current CUDA device (CUDA events)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def check_fp16_grad_scaler() -> str:
    from course_lib import data, models, train
    from course_lib.seed import seed_everything

    device = torch.device("cuda")
    splits = data.load_digits_split(seed=0)
    train_loader, val_loader, _ = data.make_loaders(splits, batch_size=64, seed=0)
    g = torch.tensor(1e-8, device=device)
    if g.half().item() != 0.0 or (g * 2**16).half().float().item() / 2**16 == 0.0:
        raise AssertionError("1e-8 should underflow in float16 and survive when scaled by 2^16")
    seed_everything(0)
    initial = models.MLP(hidden=(300, 100))
    results, trained = {}, {}
    for name, dtype in [("float32", None), ("float16", torch.float16)]:
        trained[name] = model = models.MLP(hidden=(300, 100))
        model.load_state_dict(initial.state_dict())
        results[name] = train.fit(model, train_loader, val_loader,
                                  torch.optim.Adam(model.parameters(), lr=1e-3),
                                  F.cross_entropy, 20, device, amp_dtype=dtype,
                                  progress=False)  # fmt: skip
    X, y = splits.train.X[:256].to(device), splits.train.y[:256].to(device)
    model = trained["float16"]  # trained to a low loss: small gradients

    def gradient(dtype, scale: float) -> torch.Tensor:
        model.zero_grad()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(X), y)
        (loss * scale).backward()
        return torch.cat([p.grad.flatten() / scale for p in model.parameters()])

    nonzero = gradient(None, 1.0) != 0  # float32: the entries that should not be zero
    unscaled = int(((gradient(torch.float16, 1.0) == 0) & nonzero).sum())
    scaled = int(((gradient(torch.float16, 2.0**16) == 0) & nonzero).sum())
    acc32 = results["float32"]["val_accuracy"][-1]
    acc16 = results["float16"]["val_accuracy"][-1]
    if abs(acc16 - acc32) > 0.03:
        raise AssertionError(f"float16 accuracy {acc16:.3f} vs float32 {acc32:.3f}")
    if scaled > unscaled / 10:
        raise AssertionError(f"loss scaling left {scaled} of {unscaled} underflowed entries")
    skipped = sum(results["float16"]["skipped_steps"])
    return (f"val accuracy float32 {acc32:.3f}, float16+GradScaler {acc16:.3f} "
            f"({skipped} skipped steps); of {int(nonzero.sum())} non-zero float32 gradient "
            f"entries, {unscaled} underflow to 0 in float16, {scaled} with loss x 2^16")


def check_nccl_ddp() -> str:
    from course_lib import parallel
    from course_lib.data import load_digits_split
    from course_lib.models import MLP

    n, epochs, batch, lr = torch.cuda.device_count(), 2, 64, 0.1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.pt"
        args = ["--epochs", epochs, "--global-batch-size", batch, "--lr", lr, "--seed", 0,
                "--hidden", 32, "--device", "cuda", "--out", out]  # fmt: skip
        run = parallel.run_torchrun("course_lib.parallel", args, nproc=n, module=True,
                                    timeout_s=240)  # fmt: skip
        if run.returncode != 0:
            raise AssertionError(f"torchrun failed:\n{run.stderr[-2000:]}")
        result = torch.load(out, weights_only=True)
    # one process on GPU 0, the same global batches: each epoch the sampler's permutation
    # (seed 0 + epoch) without its last len % n entries (the reference of test_parallel.py)
    X, y = (t.cuda() for t in load_digits_split(seed=0).train)
    torch.manual_seed(0)  # rank 0's seed in course_lib.parallel.main: DDP broadcasts it
    model = MLP(hidden=(32,)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for idx in order[: len(order) - len(order) % n].split(batch):
            optimizer.zero_grad()
            F.cross_entropy(model(X[idx.cuda()]), y[idx.cuda()]).backward()
            optimizer.step()
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    diff = max((result["state_dict"][k] - v).abs().max().item() for k, v in state.items())
    if diff > 1e-4:
        raise AssertionError(f"DDP on {n} GPU(s) differs from one process by {diff:.2e}")
    return f"{n} GPU(s), nccl; largest weight difference from one process {diff:.1e}"


def check_pinned_overlap() -> str:
    device = torch.device("cuda")
    host = torch.empty(64 * 2**20, dtype=torch.float32).pin_memory()  # 256 MiB
    target = torch.empty_like(host, device=device)
    a = torch.randn(4096, 4096, device=device)
    side = torch.cuda.Stream()

    def copy():
        target.copy_(host, non_blocking=True)

    def compute(k):
        for _ in range(k):
            a @ a

    copy_s = _cuda_time(copy, 5)
    one = _cuda_time(lambda: compute(1), 5)
    k = max(1, round(copy_s / one))  # about as long as the copy
    compute_s = _cuda_time(lambda: compute(k), 5)

    def both():
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            copy()
        compute(k)
        torch.cuda.current_stream().wait_stream(side)

    both_s = _cuda_time(both, 5)
    serial = copy_s + compute_s
    if both_s > 0.85 * serial:
        raise AssertionError(f"copy {copy_s * 1e3:.1f} ms and compute {compute_s * 1e3:.1f} ms "
                             f"took {both_s * 1e3:.1f} ms together: no overlap")  # fmt: skip
    gbps = host.numel() * 4 / copy_s / 1e9
    return (f"pinned copy {copy_s * 1e3:.1f} ms ({gbps:.0f} GB/s), compute "
            f"{compute_s * 1e3:.1f} ms, both on two streams {both_s * 1e3:.1f} ms "
            f"({serial / both_s:.2f}x faster than one after the other)")  # fmt: skip


def check_compile() -> str:
    torch._dynamo.reset()

    def new_gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(
            math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))  # fmt: skip

    x = torch.randn(4096, 4096, device="cuda")
    compiled = torch.compile(new_gelu)
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        if not torch.allclose(compiled(x), new_gelu(x), atol=1e-5):
            raise AssertionError("compiled GELU differs from eager")
        eager_s = _cuda_time(lambda: new_gelu(x))
        compiled_s = _cuda_time(lambda: compiled(x))
    mlp = nn.Sequential(nn.Linear(1024, 1024), nn.GELU(), nn.Linear(1024, 10)).cuda()
    mlp_c = torch.compile(mlp)
    xm = torch.randn(512, 1024, device="cuda")
    loss = F.cross_entropy(mlp_c(xm), torch.zeros(512, dtype=torch.long, device="cuda"))
    loss.backward()  # the training graph compiles and runs
    with torch.inference_mode():
        if not torch.allclose(mlp_c(xm), mlp(xm), atol=1e-3):
            raise AssertionError("compiled MLP differs from eager")
    return (f"GELU on 4096x4096: eager {eager_s * 1e3:.2f} ms, compiled {compiled_s * 1e3:.2f} "
            f"ms ({eager_s / compiled_s:.1f}x), first call {first:.1f} s; MLP forward and "
            "backward compiled")  # fmt: skip


def check_two_four_sparsity() -> str:
    from torch.sparse import to_sparse_semi_structured

    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise AssertionError(f"2:4 sparse tensor cores need compute capability >= 8.0, "
                             f"this GPU has {major}.{minor}")  # fmt: skip
    torch.manual_seed(0)
    weight = torch.randn(8192, 8192, dtype=torch.float16, device="cuda")
    groups = weight.abs().reshape(-1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.topk(2, dim=1).indices, True)  # the 2 largest of every 4
    pruned = weight * keep.reshape(weight.shape)
    x = torch.randn(8192, 4096, dtype=torch.float16, device="cuda")
    sparse = to_sparse_semi_structured(pruned)
    dense_out, sparse_out = pruned @ x, sparse @ x
    err = (dense_out - sparse_out).abs().max().item() / dense_out.abs().max().item()
    if err > 1e-2:
        raise AssertionError(f"2:4 sparse product differs from dense by {err:.1e} (relative)")
    dense_s = _cuda_time(lambda: pruned @ x)
    sparse_s = _cuda_time(lambda: sparse @ x)
    return (f"8192x8192 float16 weight, 50 % zeros in 2:4 groups: dense {dense_s * 1e3:.2f} ms, "
            f"2:4 sparse {sparse_s * 1e3:.2f} ms ({dense_s / sparse_s:.2f}x), relative "
            f"difference {err:.1e}")  # fmt: skip


def check_notebook() -> str:
    notebook = ROOT / "notebooks" / "03_4_2_parallel.ipynb"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
               "--nbval-current-env", str(notebook)]  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    if run.returncode != 0:
        raise AssertionError(f"nbval failed:\n{run.stdout[-2000:]}")
    return f"{run.stdout.strip().splitlines()[-1]} ({time.perf_counter() - start:.0f} s)"


CHECKS = {
    "fp16+GradScaler": check_fp16_grad_scaler,
    "nccl DDP": check_nccl_ddp,
    "pinned overlap": check_pinned_overlap,
    "torch.compile": check_compile,
    "2:4 sparsity": check_two_four_sparsity,
    "notebook 3.4.2": check_notebook,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-notebook", action="store_true",
                        help="do not run notebook 3.4.2 under nbval")  # fmt: skip
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}, "
              f"CUDA build {torch.version.cuda or 'none'}): skipped all {len(CHECKS)} GPU "
              "checks. Run `make gpu-check` on a machine with an NVIDIA GPU.")
        return 0
    os.environ.setdefault("COURSE_PROGRESS", "0")
    names = [n for n in CHECKS if not (args.skip_notebook and n == "notebook 3.4.2")]
    print(f"gpu-check on {torch.cuda.device_count()} x {torch.cuda.get_device_name()} "
          f"(torch {torch.__version__}, CUDA {torch.version.cuda})", flush=True)
    failed, start = [], time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            summary = CHECKS[name]()
            print(f"PASS {name}: {summary} [{time.perf_counter() - t0:.1f} s]", flush=True)
        except Exception as err:  # every check reports, then the run fails loudly
            failed.append(name)
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            traceback.print_exc()
    print(f"gpu-check: {len(names) - len(failed)} of {len(names)} checks passed in "
          f"{time.perf_counter() - start:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed
                                                   else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
