"""torch.compile and activation checkpointing on this CPU (chapter 3.4.2).

1. ``torch.compile`` (Inductor) against eager, for inference and for a training step
   (forward, backward, SGD step), on three models: the chapter's written-out GELU alone, an
   MLP whose blocks are written out operator by operator (RMSNorm + GELU, where fusion has
   work to do), and a plain ``nn.Linear``/``nn.GELU`` MLP (matrix products that ATen already
   runs well). For each: the time of the first call (compilation, measured separately), the
   eager and compiled time per call (medians of interleaved rounds), the speed-up and the
   break-even number of calls, ``first call / (eager - compiled)``.
2. Activation checkpointing: a 16-layer MLP of width 256, plain and in 4 segments
   (``checkpoint_sequential``): activation bytes saved for backward
   (``parallel.saved_tensor_bytes``), the peak memory of a step (``parallel.peak_memory_bytes``,
   torch.profiler's memory records) and the time of a step.

    .venv/bin/python benchmarks/parallel_bench.py [--threads 1] [--rounds 20]

The first compiled call includes, the first time PyTorch compiles on a machine, a one-time
check of which vector instructions the C++ compiler accepts (then cached on disk under
``TORCHINDUCTOR_CACHE_DIR``); the report says whether the cache was cold.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint_sequential

from course_lib import parallel, seed_everything, timing


def new_gelu(x):
    """GPT-2's tanh GELU, written out operator by operator."""
    return 0.5 * x * (1.0 + torch.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))  # fmt: skip


class NewGELU(nn.Module):
    def forward(self, x):
        return new_gelu(x)


class RMSNorm(nn.Module):
    """RMSNorm written out: x / sqrt(mean(x^2) + eps) * weight."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def _mlp(written_out: bool, width: int = 128, depth: int = 2) -> nn.Module:
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width)]
        layers += [RMSNorm(width), NewGELU()] if written_out else [nn.LayerNorm(width), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def compile_case(name: str, fn, x: torch.Tensor, rounds: int, params=()) -> list[dict]:
    """Inference and training step, eager vs compiled, for the callable ``fn``."""
    torch._dynamo.reset()
    compiled = torch.compile(fn)
    target = torch.randint(0, 10, (x.shape[0],))
    optimizer = torch.optim.SGD(params, lr=0.01) if params else None
    xg = x.clone().requires_grad_(not params)

    def train_step(f):
        def step():
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(f(x), target).backward()
                optimizer.step()
            else:
                xg.grad = None
                f(xg).sum().backward()
        return step

    rows = []
    for case in ("inference", "training step"):
        if case == "inference":
            eager_fn, compiled_fn = (lambda: fn(x)), (lambda: compiled(x))
        else:
            eager_fn, compiled_fn = train_step(fn), train_step(compiled)
        with torch.inference_mode(case == "inference"):
            start = time.perf_counter()
            compiled_fn()  # compiles
            first = time.perf_counter() - start
            comparison = timing.interleaved({"eager": eager_fn, "compiled": compiled_fn},
                                            rounds=rounds, warmup=3)  # fmt: skip
        eager, comp = comparison.medians["eager"], comparison.medians["compiled"]
        ratio = comparison.ratio("eager", "compiled")
        breakeven = first / (eager - comp) if eager > comp else math.inf
        print(f"   {name:44s} {case:13s} first call {first:7.2f} s   eager "
              f"{eager * 1e3:8.3f} ms   compiled {comp * 1e3:8.3f} ms   speed-up {ratio:5.2f}x"
              f"   break-even {breakeven:12,.0f} calls")  # fmt: skip
        rows.append({
            "benchmark": "parallel_bench",
            "compared": f"speed-up, torch.compile {case}, {name}",
            "reference": "eager",
            "ratio": ratio,
            "target": None,
        })  # fmt: skip
        rows.append({
            "benchmark": "parallel_bench",
            "compared": f"break-even calls of torch.compile {case}, {name} "
                        f"(first call {first:.1f} s)",
            "reference": "eager",
            "ratio": breakeven,
            "shown": f"{breakeven:,.0f} calls",
            "target": None,
        })  # fmt: skip
    return rows


def checkpointing(rounds: int) -> list[dict]:
    depth, width, batch, segments = 16, 256, 256, 4
    deep = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.GELU())])
    x = torch.randn(batch, width)

    def forward(ck):
        return checkpoint_sequential(deep, segments, x, use_reentrant=False) if ck else deep(x)

    def step(ck):
        forward(ck).square().mean().backward()

    step(False)
    saved = {ck: parallel.saved_tensor_bytes(lambda ck=ck: forward(ck), exclude=deep.parameters())
             for ck in (False, True)}  # fmt: skip
    peak = {ck: parallel.peak_memory_bytes(lambda ck=ck: step(ck)) for ck in (False, True)}
    times = timing.interleaved({False: lambda: step(False), True: lambda: step(True)},
                               rounds=max(3, rounds // 4), warmup=1)  # fmt: skip
    slower = times.ratio(True, False)
    for ck in (False, True):
        print(f"   {'checkpointed (4 segments)' if ck else 'plain':26s} activations saved "
              f"{saved[ck] / 2**20:6.2f} MB   peak of a step {peak[ck] / 2**20:6.2f} MB   "
              f"step {times.medians[ck] * 1e3:7.1f} ms")  # fmt: skip
    print(f"   memory saved: activations {saved[False] / saved[True]:.2f}x, peak "
          f"{peak[False] / peak[True]:.2f}x; time paid: {slower:.2f}x")
    shape = f"{depth}-layer MLP, width {width}, batch {batch}"
    return [
        {"benchmark": "parallel_bench", "compared": f"activation bytes, plain / checkpointed "
         f"in {segments} segments, {shape}", "reference": "checkpointed",
         "ratio": saved[False] / saved[True], "target": None},
        {"benchmark": "parallel_bench", "compared": f"peak memory of a step, plain / "
         f"checkpointed, {shape}", "reference": "checkpointed",
         "ratio": peak[False] / peak[True], "target": None},
        {"benchmark": "parallel_bench", "compared": f"speed, checkpointed / plain step, {shape}",
         "reference": "plain", "ratio": 1 / slower, "target": None},
    ]  # fmt: skip


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return its rows for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cold", action="store_true",
                        help="compile into a fresh, empty Inductor cache")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as fresh:
        if args.cold:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = fresh
        try:
            print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds "
                  f"{args.rounds}, Inductor cache: {'cold' if args.cold else 'as found'}")
            print("\n1. torch.compile (Inductor, CPU) against eager")
            rows = compile_case("written-out GELU, 256x1024", new_gelu,
                                torch.randn(256, 1024), args.rounds)  # fmt: skip
            for written_out in (True, False):
                model = _mlp(written_out)
                name = ("MLP, written-out RMSNorm+GELU" if written_out
                        else "MLP, nn.LayerNorm+nn.GELU") + ", batch 1024"  # fmt: skip
                rows += compile_case(name, model, torch.randn(1024, 128), args.rounds,
                                     list(model.parameters()))  # fmt: skip
        finally:
            if args.cold:
                if cache is None:
                    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
                else:
                    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    print("\n2. activation checkpointing")
    rows += checkpointing(args.rounds)
    return rows


if __name__ == "__main__":
    measure()
