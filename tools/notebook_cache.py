"""The book's executed notebooks: run two at a time, never stale, exported for nbval.

The book build executes every notebook once and keeps the results in jupyter-cache
(``_build/.jupyter_cache``); ``make nbval`` then executes those executed notebooks again
and compares each cell's outputs with the stored ones. This module holds the three pieces
of that pipeline (the Sphinx side is ``book/_ext/notebook_cache.py``):

* :func:`inputs_digest` / :func:`sync_cache`: jupyter-cache keys a notebook on its code
  cells only, so a change to ``course_lib/``, ``requirements.txt`` or ``pyproject.toml``
  would still be served the outputs the old library computed. A SHA-256 of those inputs is
  stored in the cache folder (``course_inputs.sha256``); when it differs from the current
  one the whole cache is deleted before the build reads a notebook.
* :func:`execute_into_cache`: the notebooks that have no cached outputs are executed
  ``COURSE_JOBS`` (default 2) at a time, each in its own kernel and with its own folder as
  working directory, exactly as MyST-NB would execute them one after the other, and cached;
  the build then renders every notebook from the cache.
* :func:`export_executed`: writes the cached, executed copy of every notebook of the TOC to
  a folder for nbval (``python tools/notebook_cache.py export _build/nbval``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "_build" / ".jupyter_cache"
# Everything whose change can change a notebook's outputs without changing its code cells.
INPUTS = ("course_lib", "requirements.txt", "pyproject.toml")
DIGEST_FILE = "course_inputs.sha256"
IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}
DEFAULT_JOBS = 2


def input_files(root: Path = ROOT) -> list[Path]:
    """The files :data:`INPUTS` name under ``root`` (folders walked), sorted."""
    files = []
    for name in INPUTS:
        path = root / name
        candidates = path.rglob("*") if path.is_dir() else [path]
        for file in candidates:
            relative = file.relative_to(root)
            if (
                file.is_file()
                and not IGNORED_PARTS.intersection(relative.parts)
                and file.suffix not in IGNORED_SUFFIXES
            ):
                files.append(file)
    return sorted(files)


def inputs_digest(root: Path = ROOT) -> str:
    """SHA-256 over the relative path and bytes of every file of :func:`input_files`."""
    digest = hashlib.sha256()
    for file in input_files(root):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def stored_digest(cache_dir: Path = CACHE_DIR) -> str | None:
    """The inputs digest the cache's outputs were computed with, or None if unknown."""
    marker = Path(cache_dir) / DIGEST_FILE
    return marker.read_text(encoding="utf-8").strip() if marker.is_file() else None


def sync_cache(cache_dir: Path = CACHE_DIR, digest: str | None = None) -> bool:
    """Delete ``cache_dir`` unless it was filled with the current inputs; True if deleted.

    Afterwards the folder exists and records ``digest`` (default: :func:`inputs_digest`)."""
    cache_dir = Path(cache_dir)
    digest = digest or inputs_digest()
    cleared = False
    if stored_digest(cache_dir) != digest and cache_dir.exists():
        shutil.rmtree(cache_dir)
        cleared = True
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / DIGEST_FILE).write_text(digest + "\n", encoding="utf-8")
    return cleared


def cached(cache, nb) -> bool:
    """Whether jupyter-cache holds executed outputs for exactly these code cells."""
    try:
        cache.match_cache_notebook(nb)
    except KeyError:
        return False
    return True


@dataclass
class Execution:
    """One notebook executed by :func:`execute_into_cache`."""

    path: Path
    seconds: float
    error: str | None = None


async def _execute(path: Path, timeout: int | None, allow_errors: bool, slots) -> tuple:
    from nbclient import NotebookClient

    async with slots:
        nb = nbformat.read(path, as_version=4)
        options = nb.metadata.get("execution", {})  # per-notebook overrides, as jupyter-cache
        client = NotebookClient(
            nb,
            timeout=options.get("timeout", timeout),
            allow_errors=options.get("allow_errors", allow_errors),
            record_timing=False,  # cell metadata is part of jupyter-cache's key: leave it
            resources={"metadata": {"path": str(path.parent)}},
        )
        start = time.perf_counter()
        error = None
        try:
            await client.async_execute()
        except Exception as exc:  # a failing cell, a timeout, a dead kernel: reported
            error = f"{type(exc).__name__}: {exc}"
        return nb, Execution(path, time.perf_counter() - start, error)


def execute_into_cache(
    paths: Iterable[Path],
    cache_dir: Path = CACHE_DIR,
    *,
    jobs: int | None = None,
    timeout: int | None = 180,
    allow_errors: bool = False,
    log: Callable[[str], None] = print,
) -> list[Execution]:
    """Execute the notebooks of ``paths`` that have no cached outputs, ``jobs`` at a time.

    Each runs in its own kernel (its ``kernelspec``) with its folder as working directory;
    cells tagged ``raises-exception`` may raise. A notebook that executes without error is
    cached under its path, as MyST-NB caches it; a failing one is not cached (the build then
    executes it itself and reports the error)."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    jobs = jobs or int(os.environ.get("COURSE_JOBS", DEFAULT_JOBS))
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    cache = get_cache(str(cache_dir))
    todo = [Path(p) for p in paths if not cached(cache, nbformat.read(p, as_version=4))]
    if not todo:
        return []
    log(f"executing {len(todo)} notebook(s), {jobs} at a time")

    def store(nb, run: Execution) -> Execution:  # as each finishes: an interrupted build
        if run.error is None:  # keeps what it completed
            bundle = CacheBundleIn(nb, str(run.path), data={"execution_seconds": run.seconds})
            cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            log(f"executed {run.path.name} in {run.seconds:.1f} s")
        else:
            log(f"{run.path.name} failed after {run.seconds:.1f} s: {run.error[:300]}")
        return run

    async def run_all():
        slots = asyncio.Semaphore(jobs)

        async def one(path):
            return store(*await _execute(path, timeout, allow_errors, slots))

        return await asyncio.gather(*(one(p) for p in todo))

    started = time.perf_counter()
    results = asyncio.run(run_all())
    log(f"executed {len(todo)} notebook(s) in {time.perf_counter() - started:.1f} s")
    return results


def cached_seconds(paths: Iterable[Path], cache_dir: Path = CACHE_DIR) -> dict[str, float | None]:
    """``{notebook name: seconds its cached execution took}`` (None: not in the cache)."""
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    seconds = {}
    for path in paths:
        try:
            record = cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            seconds[Path(path).name] = None
        else:
            seconds[Path(path).name] = record.data.get("execution_seconds")
    return seconds


def export_executed(
    paths: Iterable[Path],
    destination: Path,
    cache_dir: Path = CACHE_DIR,
    source_dir: Path | None = None,
) -> list[Path]:
    """Write the cached, executed copy of each notebook to ``destination/notebooks/``.

    ``destination`` is emptied first, then holds the files of ``source_dir`` (default:
    ``notebooks/``) but its notebooks, so that each notebook runs in a folder like its own,
    and the executed copy of each notebook of ``paths``, every cell's outputs as executed (nbval
    compares all of them; wall-clock numbers are masked by its sanitizer, not exempted here).
    Raises ``RuntimeError`` when the cache is stale or lacks a notebook (build the book)."""
    from jupyter_cache import get_cache

    if stored_digest(cache_dir) != inputs_digest():
        raise RuntimeError(
            f"the outputs in {cache_dir} were not computed with the current course_lib, "
            "requirements.txt and pyproject.toml: run `make book` first"
        )
    cache = get_cache(str(cache_dir))
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    target = destination / "notebooks"
    ignore = shutil.ignore_patterns("*.ipynb", "_generated", ".ipynb_checkpoints", "__pycache__")
    shutil.copytree(source_dir or ROOT / "notebooks", target, ignore=ignore)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        try:
            _, executed = cache.merge_match_into_notebook(nb)
        except KeyError:
            raise RuntimeError(
                f"{path.name} has no executed copy in {cache_dir}: run `make book` first"
            ) from None
        out = target / Path(path).name
        nbformat.write(executed, out)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from benchmarks.notebook_times import toc_notebooks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the executed notebooks for nbval")
    export.add_argument("destination", type=Path)
    sub.add_parser("digest", help="print the inputs digest and whether the cache matches it")
    args = parser.parse_args(argv)
    if args.command == "digest":
        current, stored = inputs_digest(), stored_digest()
        print(f"inputs {current}\ncache  {stored}\n{'fresh' if current == stored else 'stale'}")
        return 0
    try:
        written = export_executed(toc_notebooks(), args.destination)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(written)} executed notebooks in {args.destination / 'notebooks'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
