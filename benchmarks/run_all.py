"""Run every benchmark and write one markdown table of ratios (``make bench``).

Imports ``optim_bench``, ``prune_bench``, ``compress_bench``, ``data_bench``, ``lm_bench``,
``experiment_bench`` and ``parallel_bench``, runs each with its default arguments (its usual
report goes to ``_build/bench/<name>.txt``), collects the rows each returns and writes them,
with the machine's description, to ``_build/bench/results.md``;
then times every notebook once (``notebook_times.py``, table in
``_build/bench/notebook_times.md``) unless ``--skip-notebooks``.

    .venv/bin/python -m benchmarks.run_all [--skip-notebooks] [--out-dir _build/bench]

Every ratio reads "higher is better": a speed-up is time(reference) / time(compared) and a size
reduction is bytes(reference) / bytes(compared). Missing a target is reported, not an error:
the exit status is nonzero only if a benchmark crashes or a notebook fails to execute.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

from benchmarks import (
    compress_bench,
    data_bench,
    experiment_bench,
    lm_bench,
    notebook_times,
    optim_bench,
    parallel_bench,
    prune_bench,
)

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {
    "optim_bench": optim_bench,
    "prune_bench": prune_bench,
    "compress_bench": compress_bench,
    "data_bench": data_bench,
    "experiment_bench": experiment_bench,
    "lm_bench": lm_bench,
    "parallel_bench": parallel_bench,
}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads by default), Python "
        f"{platform.python_version()}, {platform.system()}{load}"
    )


def ratio_table(rows: list[dict]) -> str:
    """Markdown table benchmark | what is compared | reference | ratio | target | met?"""
    lines = [
        "| benchmark | what is compared | reference | ratio | target | met? |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        shown = row.get("shown") or f"{row['ratio']:.2f}×"
        target = row.get("target")
        if target is None:
            target_text, met = "", "—"
        else:
            target_text, met = f"≥ {target:g}×", "yes" if row["ratio"] >= target else "**no**"
        lines.append(
            f"| {row['benchmark']} | {row['compared']} | {row['reference']} | {shown} "
            f"| {target_text} | {met} |"
        )
    return "\n".join(lines)


def run_benchmark(name: str, module, log: Path) -> tuple[list[dict], str | None]:
    """Run one benchmark with its defaults, its report going to ``log``; restore torch's thread
    count afterwards (benchmarks set it). Returns its rows and the traceback if it crashed."""
    threads = torch.get_num_threads()
    try:
        with log.open("w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
            return module.measure([]), None
    except Exception:
        return [], traceback.format_exc()
    finally:
        torch.set_num_threads(threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "_build" / "bench")
    parser.add_argument("--skip-notebooks", action="store_true",
                        help="do not time the notebooks (notebook_times.py)")  # fmt: skip
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().astimezone()
    machine = machine_description()
    print(f"Benchmarks on {machine}", flush=True)

    rows, crashed = [], []
    steps = len(BENCHMARKS) + (0 if args.skip_notebooks else 1)
    for step, (name, module) in enumerate(BENCHMARKS.items(), 1):
        log = args.out_dir / f"{name}.txt"
        print(f"[{step}/{steps}] {name} ...", end=" ", flush=True)
        start = time.perf_counter()
        bench_rows, error = run_benchmark(name, module, log)
        seconds = time.perf_counter() - start
        if error:
            crashed.append(name)
            print(f"CRASHED after {seconds:.0f} s:\n{error}", flush=True)
        else:
            print(f"{len(bench_rows)} ratios in {seconds:.0f} s (report: {log})", flush=True)
        rows += bench_rows

    table = ratio_table(rows)
    header = [
        "# Benchmark ratios",
        "",
        f"`make bench`, {started:%Y-%m-%d %H:%M %Z}, one run on: {machine}.",
        "",
        "Ratios read higher-is-better: speed-up = time(reference) / time(compared), size "
        "reduction = bytes(reference) / bytes(compared). Each timing ratio is a median over "
        "rounds in which both sides run back to back; on a shared machine expect ±10 %.",
    ]
    if crashed:
        header += ["", f"**Crashed (no rows):** {', '.join(crashed)}."]
    results = "\n".join([*header, "", table, ""])
    (args.out_dir / "results.md").write_text(results, encoding="utf-8")

    notebooks_ok = True
    if not args.skip_notebooks:
        print(f"[{steps}/{steps}] notebook_times: every notebook once, sequentially", flush=True)
        runs = notebook_times.measure()
        notebooks_ok = all(run.ok for run in runs)
        budget = notebook_times.budget_table(runs)
        (args.out_dir / "notebook_times.md").write_text(budget + "\n", encoding="utf-8")
        for run in runs:
            if not run.ok:
                print(f"{run.name} failed:\n{run.error[-3000:]}", file=sys.stderr)

    print()
    print(results)
    if not args.skip_notebooks:
        print("## Notebook time budget\n")
        print(budget)
    print(f"\nWritten: {args.out_dir / 'results.md'}"
          + ("" if args.skip_notebooks else f", {args.out_dir / 'notebook_times.md'}"))  # fmt: skip
    return 0 if not crashed and notebooks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
