"""K digits-MLP trainings one after another (``course_lib.train.fit``) against one vectorized
run of the same K models (``course_lib.experiment.train_mlps``) (chapters 3.1–3.3).

Both sides train the same K = 20 models: model k is built right after
``torch.manual_seed(k)``, sees the batches of ``make_loaders(splits, 64, seed=k)``, is trained
with Adam (lr 1e-3) for the same epochs, evaluated on validation after each epoch and on test
at the end. The sequential side is the loop a chapter would write (``fit`` per seed); the
vectorized side trains the K models as one batch of stacked parameters. The two are timed in
interleaved rounds and the median of each is kept; the ratio time(sequential) /
time(vectorized) is what to read. Also printed: the largest difference between the two
sides' per-model test accuracies (they should agree: same seeds, same batches, same update).

Two model sizes (LeNet-300-100, the default ``MLP()`` of chapter 3.1, and ``MLP(hidden=(64,))``
of chapter 3.4), each with one intra-op thread and with torch's default thread count; the row
that carries the target compares each side at its own best thread count (small sequential
runs often lose time to a second thread, the more so when other programs share the cores).

Run: ``.venv/bin/python benchmarks/experiment_bench.py [--k 20] [--epochs 3] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from course_lib.data import load_digits_split, make_loaders
from course_lib.experiment import train_mlps
from course_lib.models import MLP
from course_lib.train import evaluate, fit

TARGET = 4.0  # issue 13: at least 4× for K = 20 on 2 cores


def sequential(splits, k: int, epochs: int, hidden: tuple[int, ...]) -> list[float]:
    """K runs of ``fit`` one after another; their test accuracies."""
    accuracies = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = MLP(hidden=hidden)
        train, val, test = make_loaders(splits, batch_size=64, seed=seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        fit(model, train, val, optimizer, F.cross_entropy, epochs, "cpu", progress=False)
        accuracies.append(evaluate(model, test, F.cross_entropy, "cpu")["accuracy"])
    return accuracies


def vectorized(splits, k: int, epochs: int, hidden: tuple[int, ...]) -> list[float]:
    """One ``train_mlps`` run of the same K models; their test accuracies."""
    run = train_mlps(splits, range(k), optimizer="adam", lr=1e-3, epochs=epochs,
                     batch_size=64, hidden=hidden, device="cpu")  # fmt: skip
    return run.test_accuracy.tolist()


def time_pair(splits, k: int, epochs: int, hidden: tuple[int, ...], rounds: int):
    """Median seconds of each side over interleaved rounds, and the accuracies of the last."""
    times = {"sequential": [], "vectorized": []}
    results = {}
    sequential(splits, 1, 1, hidden)  # warm-up: first-call costs (imports, allocations)
    vectorized(splits, 1, 1, hidden)
    for _ in range(rounds):
        for name, function in (("sequential", sequential), ("vectorized", vectorized)):
            start = time.perf_counter()
            results[name] = function(splits, k, epochs, hidden)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def row(args, label: str, threads: str, ratio: float, target: float | None) -> dict:
    """One row of ``benchmarks/run_all.py``'s table: time(sequential) / time(vectorized)."""
    return {
        "benchmark": "experiment_bench",
        "compared": f"speed-up, train_mlps: {args.k} × {label} trained at once, "
                    f"{args.epochs} epochs ({threads})",
        "reference": f"{args.k} sequential course_lib.train.fit runs",
        "ratio": ratio,
        "target": target,
    }  # fmt: skip


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return its rows for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20, help="models trained")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, nargs="*", default=None,
                        help="intra-op thread counts to try (default: 1 and torch's default)")
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    thread_counts = args.threads or sorted({1, default_threads})
    splits = load_digits_split()
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, CPU, K={args.k} models, {args.epochs} epochs, "
          f"batch 64, Adam lr 1e-3, {args.rounds} interleaved rounds{load}")  # fmt: skip
    print(f"{'model':22s} {'threads':>7s} {'sequential':>11s} {'vectorized':>11s} "
          f"{'ratio':>7s} {'max |Δ test acc|':>17s}")  # fmt: skip
    rows = []
    for label, hidden in (("MLP() 64-300-100-10", (300, 100)), ("MLP(hidden=(64,))", (64,))):
        best = {"sequential": (float("inf"), 0), "vectorized": (float("inf"), 0)}
        for threads in thread_counts:
            torch.set_num_threads(threads)
            seconds, results = time_pair(splits, args.k, args.epochs, hidden, args.rounds)
            ratio = seconds["sequential"] / seconds["vectorized"]
            gap = max(abs(a - b) for a, b in zip(results["sequential"], results["vectorized"]))
            print(f"{label:22s} {threads:7d} {seconds['sequential']:10.2f}s "
                  f"{seconds['vectorized']:10.2f}s {ratio:6.2f}× {gap:17.4f}")  # fmt: skip
            best = {side: min(best[side], (seconds[side], threads)) for side in best}
            rows.append(row(args, label, f"{threads} thread{'s' * (threads > 1)}", ratio, None))
        (seq, seq_threads), (vec, vec_threads) = best["sequential"], best["vectorized"]
        print(f"{label:22s} {'best':>7s} {seq:10.2f}s {vec:10.2f}s {seq / vec:6.2f}×"
              f"   (threads: sequential {seq_threads}, vectorized {vec_threads})")  # fmt: skip
        rows.append(row(args, label, "each side at its best thread count", seq / vec, TARGET))
    torch.set_num_threads(default_threads)
    after = f" (load average now {os.getloadavg()[0]:.2f})" if hasattr(os, "getloadavg") else ""
    print(f"\nratio = time(sequential) / time(vectorized), medians over rounds{after}")
    return rows


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
