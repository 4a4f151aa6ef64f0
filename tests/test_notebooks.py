"""Notebook conventions (CONTRIBUTING.md, "Notebooks"): enforced on every notebook in notebooks/."""

from __future__ import annotations

import pytest
from notebook_rules import (
    PIP_URL,
    ROOT,
    SETUP_MARKER,
    code_cells,
    config,
    notebooks,
    read,
    toc_files,
)

NOTEBOOKS = notebooks()
IDS = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


def test_toc_and_notebooks_match():
    listed = {f for f in toc_files() if f.startswith("notebooks/")}
    present = {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert listed - present == set(), f"_toc.yml lists missing notebooks: {listed - present}"
    assert present - listed == set(), f"notebooks not in _toc.yml: {present - listed}"


def test_every_toc_entry_exists():
    for entry in toc_files():
        candidates = [ROOT / f"{entry}{ext}" for ext in ("", ".md", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml entry {entry!r} has no file"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_setup_cell_first_and_url_matches_config(path):
    first = code_cells(read(path))[0].source
    assert SETUP_MARKER in first, f"{path.name}: first code cell must be the Colab setup cell"
    match = PIP_URL.search(first)
    assert match, f"{path.name}: setup cell must pip-install course_lib from the repository"
    repo = config()["repository"]
    assert match["url"] == repo["url"], f"{path.name}: {match['url']} != {repo['url']}"
    assert match["branch"] == repo["branch"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_stripped(path):
    for cell in code_cells(read(path)):
        assert cell.outputs == [], f"{path.name}: a cell has outputs (run `make strip`)"
        assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_kernelspec_is_python3(path):
    assert read(path).metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_placeholders_and_checks_its_results(path):
    nb = read(path)
    text = "\n".join(c.source for c in nb.cells)
    for word in ("TODO", "FIXME", "TBD", "lorem ipsum"):
        assert word not in text, f"{path.name} contains a placeholder: {word}"
    assert any("assert " in c.source for c in code_cells(nb)), (
        f"{path.name}: a chapter must check its key results with an assert"
    )
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
        f"{path.name}: the first cell must be a markdown title"
    )


def test_repository_url_written_once_in_config():
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    url = config()["repository"]["url"]
    assert text.count(url) == 1
