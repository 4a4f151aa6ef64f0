"""Dense float32 vs int8 dynamic quantization of a wide MLP on this CPU (chapter 3.4).

Prints, in one run, the latency ratio dense / int8 at batch 1 and batch 64 and the measured
size ratios. Timings on a shared machine are noisy, so the two models are timed in alternation
(``course_lib.timing.interleaved``, the helper the chapters use) and each ratio is the median of
the per-round ratios.

    .venv/bin/python benchmarks/compress_bench.py [--hidden 1024 2048] [--threads 1 2]

Two widths by default, because they sit in two regimes. At width 1024 the float32 weights
(8 MB) fit in a typical server CPU's last-level cache, so batch-1 latency is bound by call
overhead and arithmetic and int8 gains little. At width 2048 (32 MB float32 vs 8 MB int8) a
batch-1 forward pass is bound by memory bandwidth, and reading 4x fewer bytes is what int8 buys.

If ``torchao`` is installed, its eager int8 dynamic-activation / int8-weight path is timed too
(the successor of ``torch.ao.quantization``; the course uses ``torch.ao``, see chapter 3.4).
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch

from course_lib import compress, seed_everything, timing
from course_lib.models import MLP
from course_lib.parallel import num_threads


def ratio_over_rounds(reference, candidate, x, rounds: int, repeats: int) -> tuple[float, float]:
    """Median over ``rounds × repeats`` interleaved rounds of latency(reference) /
    latency(candidate); also the reference's median latency in seconds."""
    with timing.inference(reference, candidate):
        comparison = timing.interleaved(
            {"reference": lambda: reference(x), "candidate": lambda: candidate(x)},
            rounds=rounds * repeats, warmup=5,
        )  # fmt: skip
    return comparison.ratio("reference", "candidate"), comparison.medians["reference"]


def torchao_int8(model: torch.nn.Module):
    """torchao's int8 dynamic quantization of a copy of ``model``, or None if not installed."""
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        return None
    clone = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(clone, Int8DynamicActivationInt8WeightConfig())
    return clone


def row(compared: str, width: int, ratio: float, target: float | None = None) -> dict:
    """One row of ``benchmarks/run_all.py``'s table (int8 against the float32 model)."""
    return {
        "benchmark": "compress_bench",
        "compared": compared,
        "reference": f"float32 MLP {width}-{width}-{width}-10",
        "ratio": ratio,
        "target": target,
    }


def measure_width(width: int, args: argparse.Namespace) -> list[dict]:
    """Size and latency ratios of one MLP of hidden width ``width``: printed, and returned as
    rows for ``run_all.py``."""
    seed_everything(0)
    dense = MLP(in_features=width, hidden=(width, width), num_classes=10).eval()
    int8 = compress.quantize_dynamic_int8(dense)
    ao = torchao_int8(dense)
    print(f"torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}, "
          f"MLP {width} -> {width} -> {width} -> 10")  # fmt: skip
    size = compress.model_size_bytes(dense) / compress.model_size_bytes(int8)
    weights = compress.linear_weight_bytes(dense) / compress.linear_weight_bytes(int8)
    print(f"size ratio dense / int8: checkpoint {size:.2f}x, Linear weights {weights:.2f}x")
    rows = [row("size reduction, float32 / int8 (torch.ao dynamic) checkpoint bytes", width, size)]
    for threads in args.threads:
        print(f"-- {threads} thread(s)")
        with num_threads(threads):
            for batch, target in [(1, 1.5), (64, 2.0)]:
                x = torch.randn(batch, width)
                with torch.inference_mode():
                    err = ((int8(x) - dense(x)).norm() / dense(x).norm()).item()
                speed, dense_s = ratio_over_rounds(dense, int8, x, args.rounds, args.repeats)
                verdict = "meets" if speed >= target else "misses"
                print(f"batch {batch:3d}: dense {dense_s * 1e3:7.3f} ms, int8 (torch.ao) is "
                      f"{speed:.2f}x faster ({verdict} the {target}x target), "
                      f"relative output error {err:.1e}")  # fmt: skip
                x_desc = f"batch {batch}, {threads} thread{'s' * (threads > 1)}"
                rows.append(row(f"speed-up, int8 (torch.ao dynamic), {x_desc}", width, speed,
                                target))  # fmt: skip
                if ao is not None:
                    ao_speed, _ = ratio_over_rounds(dense, ao, x, args.rounds, args.repeats)
                    print(f"           torchao int8 (eager): {ao_speed:.2f}x the dense speed")
                    rows.append(row(f"speed-up, torchao int8 (eager), {x_desc}", width, ao_speed))
    if ao is None:
        print("torchao is not installed: its int8 path was not measured (pip install torchao)")
    return rows


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return its rows for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 2048],
                        help="widths of the two hidden layers to measure (one model per width)")
    parser.add_argument("--threads", type=int, nargs="+",
                        default=sorted({1, torch.get_num_threads()}),
                        help="intra-op thread counts to measure (default: 1 and all cores)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    return [r for width in args.hidden for r in measure_width(width, args)]


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
