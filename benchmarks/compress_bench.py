"""float32 against int8 on this CPU: torch.ao's kernels and torchao's successors (chapter 3.4.1).

Prints, in one run, latency ratios (float32 / int8: > 1 means int8 is faster) at batch 1 and
batch 64, and size ratios, for:

1. a wide MLP: ``torch.ao`` dynamic int8 (``compress.quantize_dynamic_int8``), and torchao's
   ``Int8DynamicActivationInt8WeightConfig`` in eager mode and under ``torch.compile``;
2. the chapter's CNN (``models.SmallCNN(hidden=256)``): ``torch.ao`` dynamic and static int8
   (``compress.quantize_static_int8``), torchao eager and compiled, and the PT2E flow
   (``prepare_pt2e`` / ``convert_pt2e`` with ``X86InductorQuantizer``) eager and compiled.

Every pair of models is timed in alternation (``course_lib.timing.interleaved``, the helper the
chapters use) and each ratio is the median of the per-round ratios.

    .venv/bin/python benchmarks/compress_bench.py [--hidden 1024 2048] [--threads 1 2]
                                                  [--no-compile]

Two MLP widths by default, because they sit in two regimes. At width 1024 the float32 weights
(8 MB) fit in a typical server CPU's last-level cache, so batch-1 latency is bound by call
overhead and arithmetic and int8 gains little. At width 2048 (32 MB float32 vs 8 MB int8) a
batch-1 forward pass is bound by memory bandwidth, and reading 4x fewer bytes is what int8 buys.
Compiling (``compress.compile_int8``: Inductor with freezing, one compilation per shape) runs a
C++ compiler: tens of seconds in all.
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib import compress, data, seed_everything, timing
from course_lib.models import MLP, SmallCNN
from course_lib.parallel import num_threads


def speedup(reference, candidate, x, rounds: int) -> tuple[float, float, float]:
    """Median over ``rounds`` interleaved rounds of latency(reference) / latency(candidate),
    and the two median latencies in seconds."""
    models = [m for m in (reference, candidate) if isinstance(m, torch.nn.Module)
              and not isinstance(m, torch.fx.GraphModule)]  # fmt: skip
    with timing.inference(*models) if models else torch.inference_mode():
        comparison = timing.interleaved(
            {"reference": lambda: reference(x), "candidate": lambda: candidate(x)},
            rounds=rounds, warmup=5,
        )  # fmt: skip
    medians = comparison.medians
    return comparison.ratio("reference", "candidate"), medians["reference"], medians["candidate"]


def row(compared: str, reference: str, ratio: float, target: float | None = None) -> dict:
    """One row of ``benchmarks/run_all.py``'s table."""
    return {"benchmark": "compress_bench", "compared": compared, "reference": reference,
            "ratio": ratio, "target": target}  # fmt: skip


def torchao_variants(model, examples, compile_: bool) -> dict:
    """torchao's eager int8 model and, with ``compile_``, its compiled form (or {})."""
    if compress.torchao_version() is None:
        print("torchao is not installed: its int8 paths were not measured (pip install torchao)")
        return {}
    eager = compress.quantize_torchao_int8(model)
    variants = {"torchao int8 (eager)": eager}
    if compile_:
        start = time.perf_counter()
        variants["torchao int8 (compiled)"] = compress.compile_int8(eager, examples)
        print(f"  compiled torchao for {len(examples)} shapes in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return variants


def measure_variants(dense, variants: dict, reference: str, batches, threads, rounds, targets,
                     input_shape) -> list[dict]:  # fmt: skip
    rows = []
    for n in threads:
        with num_threads(n):
            for batch in batches:
                x = torch.randn(batch, *input_shape)
                if len(input_shape) == 3:
                    x = x.clamp(0, 1)
                for name, model in variants.items():
                    ratio, ref_s, cand_s = speedup(dense, model, x, rounds)
                    target = targets.get((name, batch))
                    verdict = "" if target is None else (
                        f" ({'meets' if ratio >= target else 'misses'} the {target}x target)")
                    print(f"  {n} thread(s), batch {batch:3d}: float32 {ref_s * 1e3:8.3f} ms, "
                          f"{name} {cand_s * 1e3:8.3f} ms: {ratio:.2f}x{verdict}")  # fmt: skip
                    desc = f"batch {batch}, {n} thread{'s' * (n > 1)}"
                    rows.append(row(f"speed-up, {name}, {desc}", reference, ratio, target))
    return rows


def measure_mlp(width: int, args: argparse.Namespace) -> list[dict]:
    seed_everything(0)
    dense = MLP(in_features=width, hidden=(width, width), num_classes=10).eval()
    reference = f"float32 MLP {width}-{width}-{width}-10"
    int8 = compress.quantize_dynamic_int8(dense)
    print(f"MLP {width} -> {width} -> {width} -> 10")
    size = compress.model_size_bytes(dense) / compress.model_size_bytes(int8)
    weights = compress.linear_weight_bytes(dense) / compress.linear_weight_bytes(int8)
    print(f"  size ratio float32 / int8: checkpoint {size:.2f}x, Linear weights {weights:.2f}x")
    rows = [row("size reduction, int8 (torch.ao dynamic) checkpoint bytes", reference, size)]
    examples = [torch.randn(b, width) for b in args.batches]
    variants = {"int8 (torch.ao dynamic)": int8,
                **torchao_variants(dense, examples, args.compile)}  # fmt: skip
    targets = {("int8 (torch.ao dynamic)", 1): 1.5, ("int8 (torch.ao dynamic)", 64): 2.0}
    return rows + measure_variants(dense, variants, reference, args.batches, args.threads,
                                   args.rounds, targets, (width,))  # fmt: skip


def measure_cnn(args: argparse.Namespace) -> list[dict]:
    """The chapter's CNN: static int8 quantizes its convolutions, dynamic only its Linears."""
    seed_everything(0)
    dense = SmallCNN(hidden=256).eval()
    reference = "float32 SmallCNN(hidden=256), 8×8 digits"
    splits = data.load_digits_split(seed=0, as_images=True)
    calib = list(data.batch_loader(splits.train, 8, shuffle=True, seed=0))[:16]
    print("SmallCNN(hidden=256) on 1×8×8 images")
    static = compress.quantize_static_int8(dense, calib)
    dynamic = compress.quantize_dynamic_int8(dense, per_channel=True)
    rows = []
    for name, model in [("static int8 (torch.ao)", static), ("dynamic int8 (torch.ao)", dynamic)]:
        size = compress.model_size_bytes(dense) / compress.model_size_bytes(model)
        print(f"  size ratio float32 / {name}: checkpoint {size:.2f}x")
        rows.append(row(f"size reduction, {name} checkpoint bytes", reference, size))
    examples = [splits.test.X[:b] for b in args.batches]
    variants = {"static int8 (torch.ao)": static, "dynamic int8 (torch.ao)": dynamic,
                **torchao_variants(dense, examples, args.compile)}  # fmt: skip
    if compress.torchao_version() is not None:
        pt2e = compress.quantize_pt2e_int8(dense, examples[-1], calib)
        variants["static int8 (PT2E, eager)"] = pt2e
        if args.compile:
            start = time.perf_counter()
            variants["static int8 (PT2E, compiled)"] = compress.compile_int8(pt2e, examples)
            print(f"  compiled PT2E for {len(examples)} shapes in "
                  f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return rows + measure_variants(dense, variants, reference, args.batches, args.threads,
                                   args.rounds, {}, (1, 8, 8))  # fmt: skip


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return its rows for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 2048],
                        help="widths of the MLP's hidden layers (one model per width)")
    parser.add_argument("--threads", type=int, nargs="+",
                        default=sorted({1, torch.get_num_threads()}),
                        help="intra-op thread counts to measure (default: 1 and all cores)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the torch.compile paths (they run a C++ compiler)")
    args = parser.parse_args(argv)
    support = compress.cpu_int8_support()
    print(f"torch {torch.__version__}, torchao {compress.torchao_version()}; "
          + ", ".join(f"{k}: {v}" for k, v in support.items()))
    rows = [r for width in args.hidden for r in measure_mlp(width, args)]
    return rows + measure_cnn(args)


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
