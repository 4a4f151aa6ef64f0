"""What every notebook must satisfy; used by tests/test_notebooks.py (and usable by hand)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

from benchmarks.notebook_times import toc_entries

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SETUP_MARKER = '"google.colab" in sys.modules'
# The setup cell names the repository once (a line of at most 88 characters) and installs from it;
# IPython expands {REPOSITORY} in the magic's line.
PIP_URL = re.compile(
    r'^REPOSITORY = "(?P<url>\S+?)"\n(?:.*\n)*?'
    r'\s*%pip install -q "course_lib @ git\+\{REPOSITORY\}@(?P<branch>[\w.-]+)"',
    re.M,
)


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_files() -> list[str]:
    """Every ``file:`` in ``_toc.yml``, in order (the reader is shared with the benchmarks)."""
    return toc_entries()


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]
