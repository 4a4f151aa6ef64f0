"""Dense vs masked vs structurally pruned MLPs: CPU latency ratios (chapter 3.2).

Prints, in one run, latency(dense) / latency(model) at batch 1 and batch 256 for

- ``masked (mask applied)``: 90 % of the weights zeroed by ``prune.magnitude_prune``, the mask
  recomputed at every forward pass (a parametrization);
- ``masked (zeros stored)``: the same zeros made permanent (``prune.make_permanent``);
- ``structured -X%``: ``prune.remove_neurons`` with X % of the hidden neurons removed.

and, for ``models.SmallCNN`` (Conv → BatchNorm → ReLU blocks, eval mode), latency(full) /
latency(half the channels of both convolutions, ``prune.remove_neurons``) at batch 64.

Timings on a shared machine are noisy, so every ratio is the median over several rounds, and in
each round all models are timed back to back (same machine state). Targets: removing 50 % of
the hidden neurons gives >= 1.7x lower latency at batch 256 (issue 4); half the CNN's channels
give >= 1.5x lower latency at batch 64 (issue 16).

    .venv/bin/python benchmarks/prune_bench.py [--hidden 300 100] [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy

import torch

from course_lib import compress, prune, seed_everything, timing
from course_lib.models import MLP, SmallCNN

TARGET_SPEEDUP = 1.7  # issue 4: structured -50 % of the hidden neurons, batch 256
TARGET_CNN_SPEEDUP = 1.5  # issue 16: half the channels of SmallCNN, batch 64


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


def cnn_ratio(channels: tuple[int, int], batch: int, rounds: int, repeats: int) -> tuple:
    """latency(SmallCNN) / latency(half its channels) at ``batch``, median of interleaved
    rounds; also both FLOP counts (one image)."""
    seed_everything(0)
    full = SmallCNN(channels=channels)
    with torch.no_grad():  # give the BatchNorms statistics, as after training
        full(torch.rand(256, 1, 8, 8))
    full.eval()
    half = prune.remove_neurons(full, 0.5).eval()
    x = torch.rand(batch, 1, 8, 8)
    with timing.inference(full, half):
        comparison = timing.interleaved({"full": lambda: full(x), "half": lambda: half(x)},
                                        rounds=rounds * repeats, warmup=5)  # fmt: skip
    return (comparison.ratio("full", "half"), compress.flops(full, x[:1]),
            compress.flops(half, x[:1]), prune.hidden_widths(half))


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
    parser.add_argument("--cnn-channels", type=int, nargs=2, default=[16, 32])
    parser.add_argument("--cnn-batch", type=int, default=64)
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

    cnn, cnn_flops, half_flops, widths = cnn_ratio(tuple(args.cnn_channels), args.cnn_batch,
                                                   args.rounds, args.repeats)
    verdict = "meets" if cnn >= TARGET_CNN_SPEEDUP else "misses"
    print(f"SmallCNN{tuple(args.cnn_channels)} with BatchNorm -> {widths} channels: FLOPs/image "
          f"{cnn_flops:,} -> {half_flops:,} ({cnn_flops / half_flops:.2f}x fewer); latency at "
          f"batch {args.cnn_batch}: {cnn:.2f}x lower (target >= {TARGET_CNN_SPEEDUP:.2f}x: "
          f"{verdict} it)")

    rows = [{
        "benchmark": "prune_bench",
        "compared": f"speed-up, SmallCNN half the channels, batch {args.cnn_batch} "
                    f"({args.threads} thread)",
        "reference": f"SmallCNN{tuple(args.cnn_channels)} with BatchNorm",
        "ratio": cnn,
        "target": TARGET_CNN_SPEEDUP,
    }]
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
