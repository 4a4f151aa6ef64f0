"""Same notebook, same numbers: every chapter is executed twice and must report identical results.

Each notebook in ``_toc.yml`` runs twice with nbclient (kernel ``python3``), each run in its own
copy of ``notebooks/`` in a temporary folder, so the runs share no generated file. The two runs
of a notebook go in parallel (two processes; the notebooks pin torch to one thread), so this
test costs about one sequential execution of the book.

Every number a code cell reports is compared: numbers in its ``stream`` outputs (stdout,
stderr) and in the ``text/plain``, ``text/markdown`` and ``text/html`` data of its
``display_data`` / ``execute_result`` outputs. They must be identical, as strings. Cells tagged
``timing`` report wall-clock measurements (latency, seconds, speed-ups, throughput), which no
seed makes reproducible: they must run without error but their numbers are not compared.

Execution times of both runs go to ``_build/notebook_times.md`` (the runs share the machine's
two cores, so they are slower than a single run; ``benchmarks/notebook_times.py`` measures the
time budget). When a notebook's runs differ, both executed copies are saved in
``_build/repro/`` for inspection. Run with ``make repro`` or ``pytest -m repro tests``.
"""

from __future__ import annotations

import html
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from benchmarks.notebook_times import (
    ROOT,
    NotebookRun,
    copy_notebooks,
    execute_notebook,
    toc_notebooks,
)

pytestmark = [pytest.mark.repro, pytest.mark.slow]

TIMING_TAG = "timing"
NOTEBOOKS = toc_notebooks()
TIMES_FILE = ROOT / "_build" / "notebook_times.md"
FAILED_RUNS_DIR = ROOT / "_build" / "repro"  # both executed notebooks of a failing comparison

# A decimal number, optionally signed, with thousands separators and exponent; not the digits
# inside identifiers (``T_8f3a2``, ``x86``) or after a dot.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Object reprs carry memory addresses (``<... at 0x7f3a...>``): identity, not a result.
ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")
HTML_NOISE = re.compile(r"<(style|script)\b.*?</\1>", re.DOTALL | re.IGNORECASE)
HTML_ROW_END = re.compile(r"</tr>|<br\s*/?>|</p>|</h\d>|</li>", re.IGNORECASE)
HTML_TAG = re.compile(r"<[^>]+>")
TEXT_MIMES = ("text/plain", "text/markdown", "text/html")


def output_texts(cell) -> list[str]:
    """The text of every output of ``cell`` that can report a number."""
    texts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            texts.append(output.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            for mime in TEXT_MIMES:
                if mime in data:
                    text = data[mime]
                    text = "".join(text) if isinstance(text, list) else text
                    if mime == "text/html":  # pandas Styler ids are random: keep visible text
                        text = HTML_ROW_END.sub("\n", HTML_NOISE.sub(" ", text))
                        text = html.unescape(HTML_TAG.sub(" ", text))
                    texts.append(text)
        elif kind == "error":
            texts.append(f"{output.get('ename')}: {output.get('evalue')}")
    return texts


def shorten(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def reported_numbers(cell, workdir: str) -> list[tuple[str, str]]:
    """``(number, line it appears in)`` for every number ``cell`` reports, in order.

    The run's temporary folder is replaced by a placeholder first, so paths do not count."""
    numbers = []
    for text in output_texts(cell):
        text = ADDRESS.sub("at <address>", text.replace(workdir, "<workdir>"))
        for line in text.splitlines():
            line = " ".join(line.split())
            numbers.extend((m.group(0), shorten(line)) for m in NUMBER.finditer(line))
    return numbers


def first_difference(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> str | None:
    """Description of the first number that differs between two runs of a cell, or None."""
    # Exact comparison: every cell not tagged `timing` must print the same digits twice.
    differing = [(x, y) for (x, _), (y, _) in zip(a, b) if x != y]
    for (x, line_x), (y, line_y) in zip(a, b):
        if x != y:
            return (
                f"run 1 reports {x} in {line_x!r}; run 2 reports {y} in {line_y!r} "
                f"({len(differing)} of {len(a)} numbers differ)"
            )
    if len(a) != len(b):
        shorter, longer = (a, b) if len(a) < len(b) else (b, a)
        extra, line = longer[len(shorter)]
        return (
            f"run 1 reports {len(a)} numbers, run 2 reports {len(b)}; first extra: {extra} "
            f"in {line!r}"
        )
    return None


def compare_runs(name: str, runs: list[NotebookRun], workdirs: list[str]) -> list[str]:
    """One message per code cell whose reported numbers differ between the two runs."""
    notebooks = [run.notebook() for run in runs]
    problems = []
    for index, (cell_1, cell_2) in enumerate(zip(notebooks[0].cells, notebooks[1].cells)):
        if cell_1.cell_type != "code" or TIMING_TAG in cell_1.metadata.get("tags", []):
            continue
        difference = first_difference(
            reported_numbers(cell_1, workdirs[0]), reported_numbers(cell_2, workdirs[1])
        )
        if difference:
            first_line = cell_1.source.strip().splitlines()[0] if cell_1.source.strip() else ""
            problems.append(f"{name} : cell {index} : {first_line!r}\n    {difference}")
    return problems


@pytest.fixture(scope="module")
def pool():
    """Two worker processes: the two runs of a notebook execute side by side."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as executor:
        yield executor


@pytest.fixture(scope="module")
def times():
    """Collects per-notebook execution times; writes ``_build/notebook_times.md`` at the end."""
    rows: dict[str, tuple[float, float, str]] = {}
    yield rows
    if not rows:
        return
    lines = [
        "Two runs of each notebook side by side on the same machine "
        "(`tests/test_reproducibility.py`).",
        "",
        "| notebook | run 1 s | run 2 s | status |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {n} | {a:.1f} | {b:.1f} | {s} |" for n, (a, b, s) in rows.items()]
    TIMES_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMES_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_there_are_notebooks_to_reproduce():
    assert NOTEBOOKS, "_toc.yml lists no notebook"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_two_runs_report_the_same_numbers(notebook: Path, tmp_path: Path, pool, times):
    workdirs = [copy_notebooks(tmp_path / f"run{i}") for i in (1, 2)]
    futures = [pool.submit(execute_notebook, w / notebook.name, w) for w in workdirs]
    runs: list[NotebookRun] = [f.result() for f in futures]

    errors = [f"run {i}: {r.error[-2000:]}" for i, r in enumerate(runs, 1) if not r.ok]
    if errors:
        times[notebook.name] = (runs[0].seconds, runs[1].seconds, "error")
        pytest.fail(f"{notebook.name} failed to execute:\n" + "\n".join(errors))

    problems = compare_runs(notebook.name, runs, [str(w) for w in workdirs])
    times[notebook.name] = (
        runs[0].seconds,
        runs[1].seconds,
        f"{len(problems)} cell(s) differ" if problems else "identical",
    )
    if problems:
        FAILED_RUNS_DIR.mkdir(parents=True, exist_ok=True)
        for i, run in enumerate(runs, 1):
            (FAILED_RUNS_DIR / f"{notebook.stem}.run{i}.ipynb").write_text(
                run.notebook_json, encoding="utf-8"
            )
    assert not problems, (
        f"{notebook.name}: {len(problems)} cell(s) report different numbers in two runs "
        f"(tag a cell `{TIMING_TAG}` only if it reports wall-clock measurements):\n"
        + "\n".join(problems)
        + f"\nBoth executed notebooks are in {FAILED_RUNS_DIR}."
    )
