"""A notebook must run where a reader runs it: alone in an empty folder (Colab hands over the
notebook and nothing else), with only ``course_lib`` and its declared dependencies installed.

So every module a notebook imports is the standard library, IPython, ``course_lib`` or one of
the distributions ``pyproject.toml`` declares (found through the installed distributions'
top-level modules), and no code cell names a file or folder of the repository by a relative
path. Fast: the notebooks are parsed, not run.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from notebook_rules import NOTEBOOK_DIR, ROOT, code_cells, notebooks, read

NOTEBOOKS = notebooks()
IDS = [p.stem for p in NOTEBOOKS]
ALWAYS_THERE = {"IPython", "course_lib", "ipykernel"}  # the kernel the notebook runs in
# Folders a chapter may write to (CONTRIBUTING.md, "Reproducible outputs").
WRITABLE = ("_generated",)


def declared_distributions() -> list[str]:
    """The distribution names of ``[project] dependencies`` in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+

        specs = tomllib.loads(text)["project"]["dependencies"]
    except ImportError:  # Python 3.10: the list is simple enough to read directly
        block = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)[1]
        specs = re.findall(r'^\s*"([^"]+)"', block, re.M)
    return [re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0] for spec in specs]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def allowed_modules() -> set[str]:
    """Top-level modules of the declared distributions (as installed), plus the always-there."""
    declared = {_normal(d) for d in declared_distributions()}
    modules = set(ALWAYS_THERE)
    for module, dists in importlib.metadata.packages_distributions().items():
        if any(_normal(d) in declared for d in dists):
            modules.add(module)
    return modules


def python_source(cell_source: str) -> ast.Module:
    return ast.parse(TransformerManager().transform_cell(cell_source))


def imported_modules(tree: ast.Module) -> set[str]:
    """Top-level names of every ``import x``, ``from x import``, ``importlib.import_module("x")``
    and ``__import__("x")`` in ``tree`` (relative imports excluded)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.split(".")[0])
    return found


def repository_paths(tree: ast.Module) -> set[str]:
    """String constants that name an existing file or folder of the repository, relative to
    the notebook's folder or to the repository root."""
    found = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value.strip()
        if not text or "\n" in text or len(text) > 200 or text in (".", "..", "/"):
            continue
        if text.startswith(("/", "~")) or text.split("/")[0] in WRITABLE:
            continue
        try:
            hits = [(base / text) for base in (NOTEBOOK_DIR, ROOT)]
            if any(h.exists() for h in hits) and not text.startswith("-"):
                found.add(text)
        except (OSError, ValueError):  # not a possible path
            continue
    return found


def test_allowed_modules_cover_the_declared_dependencies():
    modules = allowed_modules()
    assert {"torch", "numpy", "sklearn", "pandas"} <= modules
    assert "jupyter_book" not in modules and "nbval" not in modules  # the book's tools, not ours


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_imports_only_what_course_lib_installs(path):
    allowed = allowed_modules() | set(sys.stdlib_module_names)
    used: set[str] = set()
    for cell in code_cells(read(path)):
        used |= imported_modules(python_source(cell.source))
    extra = sorted(used - allowed)
    assert not extra, (
        f"{path.name} imports {extra}: not in the standard library, IPython, course_lib or "
        "course_lib's declared dependencies (pyproject.toml) — a reader who installs "
        "course_lib alone (Colab) would get ModuleNotFoundError"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_reads_no_repository_file_by_relative_path(path):
    named: set[str] = set()
    for cell in code_cells(read(path)):
        named |= repository_paths(python_source(cell.source))
    assert not named, (
        f"{path.name} names repository files {sorted(named)}: on Colab the notebook arrives "
        "alone; read packaged data through course_lib instead"
    )


def test_the_checks_catch_what_they_are_for():
    tree = python_source(
        "%pip install x\nimport jupyter_book\nfrom nbval import plugin\nimport os.path\n"
        "importlib.import_module('yaml')\nopen('../README.md')\nopen('_generated/out.txt')"
    )
    assert imported_modules(tree) == {"jupyter_book", "nbval", "os", "yaml"}
    assert repository_paths(tree) == {"../README.md"}
