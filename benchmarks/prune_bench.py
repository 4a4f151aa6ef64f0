"""Dense vs masked vs structurally pruned MLPs: CPU latency ratios (chapter 3.2).

Prints, in one run, latency(dense) / latency(model) at batch 1 and batch 256 for

- ``masked (mask applied)``: 90 % of the weights zeroed by ``prune.magnitude_prune``, the mask
  recomputed at every forward pass (a parametrization);
- ``masked (zeros stored)``: the same zeros made permanent (``prune.make_permanent``);
- ``structured -X%``: ``prune.remove_neurons`` with X % of the hidden neurons removed.

Timings on a shared machine are noisy, so every ratio is the median over several rounds, and in
each round all models are timed back to back (same machine state). Target (issue 4): removing
50 % of the hidden neurons gives >= 1.7x lower latency at batch 256.

    .venv/bin/python benchmarks/prune_bench.py [--hidden 300 100] [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy

import torch

from course_lib import compress, prune, seed_everything, timing
from course_lib.models import MLP

TARGET_SPEEDUP = 1.7  # issue 4: structured -50 % of the hidden neurons, batch 256


def build_models(hidden: tuple[int, ...], sparsity: float, amounts: list[float]) -> dict:
    seed_everything(0)
    dense = MLP(hidden=hidden).eval()
    masked = prune.magnitude_prune(copy.deepcopy(dense), sparsity)
    stored = prune.make_permanent(copy.deepcopy(masked))
    models = {
        "dense": dense,
        f"masked {sparsity:.0%} (mask applied)": masked,
        f"masked {sparsity:.0%} (zeros stored)": stored,
    }
    for amount in amounts:
        models[f"structured -{amount:.0%} neurons"] = prune.remove_neurons(dense, amount).eval()
    return models


def latency_ratios(models: dict, x: torch.Tensor, rounds: int, repeats: int) -> dict:
    """Median over ``rounds × repeats`` interleaved rounds of latency(dense) / latency(model),
    and the dense median latency."""
    with timing.inference(*models.values()):
        comparison = timing.interleaved(
            {name: (lambda m=m: m(x)) for name, m in models.items()},
            rounds=rounds * repeats, warmup=5,
        )  # fmt: skip
    return {name: comparison.ratio("dense", name) for name in models}, comparison.medians["dense"]


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return one row per pruned model and batch size for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[300, 100])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    models = build_models(tuple(args.hidden), args.sparsity, args.amounts)
    print(f"torch {torch.__version__}, {args.threads} thread(s), MLP(64, {args.hidden}, 10); "
          f"median of {args.rounds} rounds x {args.repeats} timed calls")
    print(f"{'model':34s} {'params':>8s} {'non-zero':>9s} {'FLOPs/ex':>9s}"
          + "".join(f" {'speed-up b=' + str(b):>14s}" for b in args.batches))
    results = {}
    for batch in args.batches:
        x = torch.rand(batch, 64)
        results[batch] = latency_ratios(models, x, args.rounds, args.repeats)
    x1 = torch.rand(1, 64)
    for name, model in models.items():
        cells = "".join(f" {results[b][0][name]:13.2f}x" for b in args.batches)
        print(f"{name:34s} {compress.count_parameters(model):8,d} "
              f"{compress.count_nonzero(model):9,d} {compress.flops(model, x1):9,d}{cells}")
    for batch in args.batches:
        print(f"dense latency at batch {batch}: {1e6 * results[batch][1]:.0f} µs")
    if 256 in results and 0.5 in args.amounts:
        ratio = results[256][0]["structured -50% neurons"]
        verdict = "meets" if ratio >= TARGET_SPEEDUP else "misses"
        print(f"target: structured -50% at batch 256 >= {TARGET_SPEEDUP:.2f}x -> {ratio:.2f}x "
              f"({verdict} it)")

    rows = []
    for batch in args.batches:
        for name, ratio in results[batch][0].items():
            if name == "dense":
                continue
            has_target = batch == 256 and name == "structured -50% neurons"
            rows.append({
                "benchmark": "prune_bench",
                "compared": f"speed-up, {name}, batch {batch} ({args.threads} thread)",
                "reference": f"dense MLP(64, {args.hidden}, 10)",
                "ratio": ratio,
                "target": TARGET_SPEEDUP if has_target else None,
            })  # fmt: skip
    return rows


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
