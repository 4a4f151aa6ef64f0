"""Time per ``step()`` of course_lib's GD / SGD / Adam against ``torch.optim`` (chapter 3.1).

Two models: one of ~1M parameters in a few large tensors, and one of many small tensors
(where Python overhead per tensor dominates). Every optimizer gets the same fixed random
gradients; only ``optimizer.step()`` is timed. The optimizers are timed in interleaved
rounds and the median of each is kept, so background load affects all of them alike; the
ratios (course_lib / torch default) are what to read, not the absolute times.

Also prints the max abs difference of the parameters after 200 training steps against
``torch.optim`` (``foreach=False``) for each configuration.

Run: ``.venv/bin/python benchmarks/optim_bench.py [--rounds 10] [--steps 10] [--threads N]``
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

from course_lib import optim, timing


def big_model() -> nn.Module:
    """~1M parameters in 4 tensors."""
    return nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))


def many_small_model(layers: int = 200, width: int = 16) -> nn.Module:
    """``2 * layers`` small tensors (weights and biases of ``width × width`` layers)."""
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])


def candidates() -> dict[str, dict[str, callable]]:
    """For each method: the course_lib optimizer and its torch.optim references."""
    return {
        "GD": {
            "course_lib GD": lambda p: optim.GD(p, lr=1e-3),
            "torch SGD (default)": lambda p: torch.optim.SGD(p, lr=1e-3),
            "torch SGD foreach=False": lambda p: torch.optim.SGD(p, lr=1e-3, foreach=False),
        },
        "SGD momentum": {
            "course_lib SGD": lambda p: optim.SGD(p, lr=1e-3, momentum=0.9),
            "torch SGD (default)": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
            "torch SGD foreach=False": lambda p: torch.optim.SGD(
                p, lr=1e-3, momentum=0.9, foreach=False
            ),
        },
        "Adam": {
            "course_lib Adam": lambda p: optim.Adam(p, lr=1e-3),
            "course_lib Adam foreach=True": lambda p: optim.Adam(p, lr=1e-3, foreach=True),
            "torch Adam (default)": lambda p: torch.optim.Adam(p, lr=1e-3),
            "torch Adam foreach=False": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=False),
            "torch Adam foreach=True": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True),
        },
    }


def time_steps(make_model, makers: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per ``step()`` of each optimizer, timed in interleaved rounds."""
    torch.manual_seed(0)
    base = make_model()
    runs = {}
    for name, make in makers.items():
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opt = make(list(model.parameters()))
        runs[name] = opt.step
    # interleaved rounds of `steps` steps each, after 3 warm-up steps (state, first-call costs)
    return timing.interleaved(runs, rounds=rounds, warmup=3, number=steps).medians


def equivalence(steps: int = 200) -> dict[str, float]:
    """Max abs parameter difference to torch.optim (foreach=False) after ``steps`` steps."""
    configs = {
        "GD": (
            lambda p: optim.GD(p, lr=0.05),
            lambda p: torch.optim.SGD(p, lr=0.05, foreach=False),
        ),
        "SGD momentum+nesterov+wd": (
            lambda p: optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-3),
            lambda p: torch.optim.SGD(
                p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-3, foreach=False
            ),
        ),
        "Adam": (
            lambda p: optim.Adam(p, lr=1e-2),
            lambda p: torch.optim.Adam(p, lr=1e-2, foreach=False),
        ),
        "Adam amsgrad+L2": (
            lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
            lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True, foreach=False),
        ),
        "AdamW": (
            lambda p: optim.Adam(p, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
            lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, foreach=False),
        ),
        "Adam foreach=True": (
            lambda p: optim.Adam(p, lr=1e-2, foreach=True),
            lambda p: torch.optim.Adam(p, lr=1e-2, foreach=False),
        ),
    }
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(256, 20, generator=g), torch.randint(0, 5, (256,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    result = {}
    for name, (ours, theirs) in configs.items():
        torch.manual_seed(0)
        a = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
        b = copy.deepcopy(a)
        for model, make in ((a, ours), (b, theirs)):
            opt, batches = make(model.parameters()), torch.Generator().manual_seed(1)
            for _ in range(steps):
                idx = torch.randint(0, len(X), (32,), generator=batches)
                opt.zero_grad()
                loss_fn(model(X[idx]), y[idx]).backward()
                opt.step()
        pairs = zip(a.parameters(), b.parameters())
        result[name] = max((p - q).abs().max().item() for p, q in pairs)
    return result


def row(model: str, method: str, name: str, seconds: float, reference: float) -> dict:
    """One row of ``benchmarks/run_all.py``'s table: speed-up of a course_lib optimizer's
    ``step()`` over torch's default, time(torch) / time(course_lib) (above 1 = faster)."""
    return {
        "benchmark": "optim_bench",
        "compared": f"speed-up of step(), {name} ({method}), {model}",
        "reference": f"torch.optim.{'Adam' if method == 'Adam' else 'SGD'} (default)",
        "ratio": reference / seconds,
        "target": None,
    }


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return one row per course_lib optimizer and model for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=10, help="step() calls per round")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    print("On CPU torch's default is its foreach=False path: the gap between those two lines "
          "is the timing noise.\n")

    print("Equivalence: max abs parameter difference after 200 steps "
          "(vs torch.optim, foreach=False)")
    for name, diff in equivalence().items():
        print(f"  {name:28s} {diff:.3g}")

    models = {
        "1M-parameter model": big_model,
        "many small tensors": many_small_model,
    }
    rows = []
    for label, make_model in models.items():
        model = make_model()
        n_params = sum(p.numel() for p in model.parameters())
        n_tensors = len(list(model.parameters()))
        print(f"\n{label}: {n_params:,} parameters in {n_tensors} tensors")
        for method, makers in candidates().items():
            times = time_steps(make_model, makers, args.rounds, args.steps)
            reference = next(t for name, t in times.items() if "(default)" in name)
            for name, seconds in times.items():
                print(f"  {method:13s} {name:30s} {seconds * 1e3:8.3f} ms/step  "
                      f"ratio to torch default {seconds / reference:5.2f}")
                if name.startswith("course_lib"):
                    rows.append(row(label, method, name, seconds, reference))
    return rows


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
