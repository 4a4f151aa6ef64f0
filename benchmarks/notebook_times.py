"""Execute every chapter notebook once, as a reader would, and check the time budget.

Each notebook listed in ``_toc.yml`` runs with nbclient (kernel ``python3``), one after the
other, in a fresh copy of ``notebooks/`` in a temporary folder (so the files a chapter writes,
such as ``_generated/``, start from nothing, as in a fresh clone). The budget: at most
``NOTEBOOK_BUDGET_S`` seconds per notebook and ``TOTAL_BUDGET_S`` for all of them.

    .venv/bin/python benchmarks/notebook_times.py [--out _build/bench/notebook_times.md]
    .venv/bin/python benchmarks/notebook_times.py --from-cache   # times of the last book build

Writes a markdown table notebook | seconds | budget met? and prints it. Exits 0 even when a
budget is missed (timing is a measurement, not a test); nonzero only if a notebook fails.
``--from-cache`` executes nothing: it reports how long each notebook took in the last
``make book`` (two at a time, so each shared the machine), from the book's jupyter-cache.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOK_BUDGET_S = 60.0
TOTAL_BUDGET_S = 6 * 60.0
CELL_TIMEOUT_S = 600


def toc_entries() -> list[str]:
    """Every ``file:`` of ``_toc.yml`` (root first), in book order, without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return files


def toc_notebooks() -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in book order."""
    paths = [ROOT / f"{entry}.ipynb" for entry in toc_entries() if entry.startswith("notebooks/")]
    return [p for p in paths if p.is_file()]


def copy_notebooks(destination: Path) -> Path:
    """Copy ``notebooks/`` to ``destination/notebooks`` without the files chapters generate
    (``_generated/``, checkpoints, jupytext scripts); return the copy's path. Downloaded data
    (a ``data/`` folder there, if any) is copied so that no run needs the network."""
    target = Path(destination) / "notebooks"
    ignore = shutil.ignore_patterns("_generated", ".ipynb_checkpoints", "*.py", "__pycache__")
    shutil.copytree(NOTEBOOK_DIR, target, ignore=ignore)
    return target


@dataclass
class NotebookRun:
    """One execution of one notebook: wall-clock seconds, the executed notebook (JSON text,
    so that it crosses process boundaries cheaply) and the error message if a cell failed."""

    name: str
    seconds: float
    notebook_json: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def notebook(self) -> nbformat.NotebookNode:
        return nbformat.reads(self.notebook_json, as_version=4)


def execute_notebook(path: str | Path, workdir: str | Path, timeout_s: int = CELL_TIMEOUT_S):
    """Execute the notebook at ``path`` with the kernel's working directory ``workdir``.

    Cells tagged ``raises-exception`` may raise (nbclient's convention); any other error stops
    the run and is returned in :attr:`NotebookRun.error`, never raised.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout_s,
        resources={"metadata": {"path": str(workdir)}},
    )
    error = None
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc)
    except Exception as exc:  # timeout, dead kernel: report, do not crash the caller
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    return NotebookRun(path.name, seconds, nbformat.writes(nb), error)


def budget_table(runs: list[NotebookRun]) -> str:
    """Markdown table notebook | seconds | budget met?, with the total against its budget."""
    lines = [
        f"| notebook | seconds | ≤ {NOTEBOOK_BUDGET_S:.0f} s? |",
        "|---|---:|---|",
    ]
    for run in runs:
        verdict = "yes" if run.seconds <= NOTEBOOK_BUDGET_S else "**no**"
        if not run.ok:
            verdict += " (failed)"
        lines.append(f"| {run.name} | {run.seconds:.1f} | {verdict} |")
    total = sum(run.seconds for run in runs)
    verdict = "yes" if total <= TOTAL_BUDGET_S else "**no**"
    lines.append(
        f"| **total** | **{total:.1f}** | ≤ {TOTAL_BUDGET_S:.0f} s ({TOTAL_BUDGET_S / 60:.0f} min)?"
        f" {verdict} |"
    )
    return "\n".join(lines)


def measure(progress=print) -> list[NotebookRun]:
    """Execute every TOC notebook once, sequentially, in a temporary copy of ``notebooks/``."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="notebook_times_") as tmp:
        workdir = copy_notebooks(Path(tmp))
        for path in toc_notebooks():
            run = execute_notebook(workdir / path.name, workdir)
            status = "ok" if run.ok else "FAILED"
            progress(f"  {run.name:28s} {run.seconds:6.1f} s  {status}")
            runs.append(run)
    return runs


def from_cache() -> list[NotebookRun]:
    """The execution times the last book build stored in its jupyter-cache."""
    sys.path.insert(0, str(ROOT))
    from tools.notebook_cache import cached_seconds

    seconds = cached_seconds(toc_notebooks())
    return [
        NotebookRun(name, s or 0.0, "", None if s is not None else "not in the book's cache")
        for name, s in seconds.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "bench" / "notebook_times.md")
    parser.add_argument("--from-cache", action="store_true",
                        help="report the last book build's times; execute nothing")  # fmt: skip
    args = parser.parse_args()
    runs = from_cache() if args.from_cache else measure()
    table = budget_table(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n", encoding="utf-8")
    print(table)
    for run in runs:
        if not run.ok:
            print(f"\n{run.name} failed:\n{run.error[-3000:]}", file=sys.stderr)
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
