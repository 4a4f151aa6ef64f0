"""``make nbval``: the book's executed notebooks executed again by nbval, those not yet verified.

1. The executed copy of every notebook of the TOC is exported from the book's jupyter-cache to
   ``_build/nbval/notebooks`` (:func:`tools.notebook_cache.export_executed`; it refuses a
   cache computed with another ``course_lib``).
2. A notebook is *pending* unless an earlier run of this script verified the very same executed
   copy with the very same comparison rules: its key (SHA-256 of the exported file, of
   ``tests/nbval_sanitize.cfg`` and of ``tools/nbval_jupyter.py``) is stored in
   ``_build/nbval-passed/<name>.sha256`` after a pass. A notebook whose code changed, or every
   notebook after a change to ``course_lib/`` (the book re-executes them, so their executed
   copies change), is pending again. ``--all`` (``make nbval NBVAL_ALL=1``) ignores the keys.
3. nbval executes the pending notebooks again, ``--jobs`` at a time (pytest-xdist), in its
   strict mode, and compares every output with the executed copy; when all pass, their keys are
   stored. A fresh clone has no keys, so ``make test`` there executes every notebook twice.

Usage: ``python tools/nbval_run.py [--all] [--jobs N] -- <nbval options>``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import notebook_cache  # noqa: E402

EXPORT_DIR = ROOT / "_build" / "nbval"
PASSED_DIR = ROOT / "_build" / "nbval-passed"
# What else decides whether a comparison passes.
RULES = (ROOT / "tests" / "nbval_sanitize.cfg", ROOT / "tools" / "nbval_jupyter.py")


def verification_key(notebook: Path, rules: tuple[Path, ...] = RULES) -> str:
    """SHA-256 of an executed notebook's bytes and of the files of the comparison rules."""
    digest = hashlib.sha256(Path(notebook).read_bytes())
    for rule in rules:
        digest.update(b"\0" + Path(rule).read_bytes())
    return digest.hexdigest()


def pending(
    notebooks: list[Path], passed_dir: Path = PASSED_DIR, rules: tuple[Path, ...] = RULES
) -> list[Path]:
    """The notebooks whose executed copy has not passed nbval with these rules before."""
    todo = []
    for notebook in notebooks:
        stamp = Path(passed_dir) / f"{Path(notebook).stem}.sha256"
        stored = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else None
        if stored != verification_key(notebook, rules):
            todo.append(notebook)
    return todo


def record_passed(
    notebooks: list[Path], passed_dir: Path = PASSED_DIR, rules: tuple[Path, ...] = RULES
) -> None:
    Path(passed_dir).mkdir(parents=True, exist_ok=True)
    for notebook in notebooks:
        stamp = Path(passed_dir) / f"{Path(notebook).stem}.sha256"
        stamp.write_text(verification_key(notebook, rules) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.notebook_times import toc_notebooks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="execute every notebook again")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks at a time")
    parser.add_argument("nbval_options", nargs="*", help="after --: pytest/nbval options")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        exported = notebook_cache.export_executed(toc_notebooks(), EXPORT_DIR)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    todo = exported if args.all else pending(exported, PASSED_DIR)
    skipped = len(exported) - len(todo)
    print(
        f"nbval: {len(todo)} of {len(exported)} notebooks to execute again"
        + (f" ({skipped} already verified with these outputs and rules)" if skipped else ""),
        flush=True,
    )
    if not todo:
        return 0
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    if args.jobs > 1 and len(todo) > 1:
        command += ["-n", str(min(args.jobs, len(todo))), "--dist", "loadfile"]
    command += [*args.nbval_options, *map(str, todo)]
    status = subprocess.call(command, cwd=ROOT)
    if status == 0:
        record_passed(todo, PASSED_DIR)
    return status


if __name__ == "__main__":
    sys.exit(main())
