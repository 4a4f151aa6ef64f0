"""A small GPT on this CPU: the KV cache, fused attention and int8 weights (chapter 5.2).

Prints, in one run:

1. tokens per second of greedy generation of ``--new`` tokens (default 200) with and without
   the KV cache (``course_lib.transformer.generate``; target: at least 3x), and whether the two
   produce the same tokens;
2. ``F.scaled_dot_product_attention`` against the written-out ``softmax(QKᵀ/√d)V`` in a
   forward pass over full windows, and the largest difference of their outputs;
3. generation with int8 weights (``compress.quantize_dynamic_int8``: every ``Linear``, head
   included) against float32, both cached.

The model is untrained (speed does not depend on the weights' values), sized so that the
prompt plus the new tokens fit its context: ``GPT(103, 256, 4, 4, 128)`` by default, 0.8 M
parameters. Arms are timed in alternation (``course_lib.timing.interleaved``) and each ratio is
the median of the per-round ratios.

    .venv/bin/python benchmarks/lm_bench.py [--new 200] [--width 128] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from course_lib import compress, seed_everything, timing
from course_lib.parallel import num_threads
from course_lib.transformer import GPT, generate


def row(compared: str, reference: str, ratio: float, target: float | None = None) -> dict:
    """One row of ``benchmarks/run_all.py``'s table."""
    return {"benchmark": "lm_bench", "compared": compared, "reference": reference,
            "ratio": ratio, "target": target}  # fmt: skip


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return its rows for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=200, help="tokens to generate")
    parser.add_argument("--prompt", type=int, default=16, help="prompt length in tokens")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    seed_everything(0)
    context = args.prompt + args.new
    model = GPT(103, context, args.layers, 4, args.width).eval()
    params = sum(p.numel() for p in model.parameters())
    desc = f"GPT {args.layers} layers, width {args.width}, context {context} ({params / 1e6:.2f} M)"
    prompt = torch.randint(0, 103, (1, args.prompt), generator=torch.Generator().manual_seed(0))
    rows = []
    with num_threads(args.threads), timing.inference(model):
        print(f"{desc}, {args.threads} thread(s), prompt {args.prompt}, {args.new} new tokens")

        # 1. KV cache
        cached = generate(model, prompt, args.new, temperature=0, use_cache=True)
        uncached = generate(model, prompt, args.new, temperature=0, use_cache=False)
        same = torch.equal(cached, uncached)
        c = timing.interleaved({
            "cache": lambda: generate(model, prompt, args.new, temperature=0, use_cache=True),
            "no cache": lambda: generate(model, prompt, args.new, temperature=0, use_cache=False),
        }, rounds=args.rounds, warmup=1)  # fmt: skip
        speed = c.ratio("no cache", "cache")
        rate = {name: args.new / t for name, t in c.medians.items()}
        print(f"KV cache: {rate['cache']:.0f} tokens/s, without: {rate['no cache']:.0f} "
              f"tokens/s -> {speed:.2f}x (target 3x); same tokens: {same}")  # fmt: skip
        rows.append(row(f"speed-up, KV cache, greedy generation of {args.new} tokens (1 thread)",
                        f"{desc}, no cache", speed, 3.0))  # fmt: skip

        # 2. fused attention vs the formula
        x = torch.randint(0, 103, (8, context), generator=torch.Generator().manual_seed(1))
        fused = model(x)
        written = model.set_attention("written")(x)
        model.set_attention("sdpa")
        diff = (fused - written).abs().max().item()

        def forward(implementation):
            def run():
                model.set_attention(implementation)
                return model(x)
            return run

        c = timing.interleaved({"sdpa": forward("sdpa"), "written": forward("written")},
                               rounds=4 * args.rounds, warmup=2)  # fmt: skip
        model.set_attention("sdpa")
        speed = c.ratio("written", "sdpa")
        print(f"forward pass, batch 8 x {context}: SDPA {c.medians['sdpa'] * 1e3:.1f} ms, "
              f"written-out {c.medians['written'] * 1e3:.1f} ms -> SDPA {speed:.2f}x; "
              f"largest logit difference {diff:.1e}")  # fmt: skip
        rows.append(row(f"speed-up, F.scaled_dot_product_attention, forward pass 8 × {context}",
                        f"{desc}, written-out softmax(QKᵀ/√d)V", speed))  # fmt: skip

        # 3. int8 weights
        int8 = compress.quantize_dynamic_int8(model)
        agree = (generate(int8, prompt, args.new, temperature=0) == cached).float().mean().item()
        c = timing.interleaved({
            "float32": lambda: generate(model, prompt, args.new, temperature=0),
            "int8": lambda: generate(int8, prompt, args.new, temperature=0),
        }, rounds=args.rounds, warmup=1)  # fmt: skip
        speed = c.ratio("float32", "int8")
        size = compress.linear_weight_bytes(model) / compress.linear_weight_bytes(int8)
        print(f"int8 weights: generation {speed:.2f}x the float32 speed, Linear weights "
              f"{size:.2f}x smaller; {agree:.0%} of greedy tokens identical")  # fmt: skip
        rows.append(row(f"speed-up, int8 weights (torch.ao dynamic), cached generation of "
                        f"{args.new} tokens", f"{desc}, float32", speed))  # fmt: skip
        rows.append(row("size reduction, float32 / int8 Linear weight bytes",
                        f"{desc}, float32", size))  # fmt: skip
    return rows


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
