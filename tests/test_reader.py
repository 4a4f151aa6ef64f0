"""What a reader relies on, checked on the sources: citations, glossary links, exercises with
hidden solutions, Colab links and a setup cell that installs only on Colab."""

from __future__ import annotations

import re
import sys
import types

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from notebook_rules import ROOT, code_cells, config, notebooks, read, toc_files
from reader_rules import first_unlinked_uses, glossary_entries, term_links

NOTEBOOKS = notebooks()
IDS = [p.stem for p in NOTEBOOKS]
BIB = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
# Primary sources the chapters rely on (issue 8): each must be in the .bib and cited.
REQUIRED_SOURCES = {
    "robbins1951": "Robbins",
    "kingma2015": "Kingma",
    "loshchilov2019": "Loshchilov",
    "lecun1990": "Optimal Brain Damage",
    "han2015": "Han",
    "frankle2019": "Frankle",
    "hinton2015": "Hinton",
    "shorten2019": "Shorten",
    "jacob2018": "Jacob",
    "micikevicius2018": "Micikevicius",
    "li2020ddp": "PyTorch Distributed",
}
# Chapters whose exercises need hidden solutions (issue 8: chapters 1 to 4, 3.1–3.4 each).
EXERCISE_CHAPTERS = [
    "01_background",
    "02_concepts",
    "03_1_parameters",
    "03_2_pruning",
    "03_2b_structured",
    "03_2c_distillation",
    "03_3_data",
    "03_4_1_compression",
    "03_4_2_parallel",
    "04_best_practices",
]
HIDDEN_TAGS = {"hide-cell", "hide-input"}


def all_sources() -> str:
    """Every Markdown and code cell of the notebooks and every book page, as one text."""
    parts = [c.source for p in NOTEBOOKS for c in read(p).cells]
    parts += [p.read_text(encoding="utf-8") for p in (ROOT / "book").glob("*.md")]
    return "\n".join(parts)


def cited_keys() -> set[str]:
    keys: set[str] = set()
    for body in re.findall(r"\{cite[a-z:]*\}`([^`]+)`", all_sources()):
        keys.update(k.strip() for k in body.split(","))
    return keys


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", BIB, re.M))


@pytest.mark.parametrize("key", sorted(REQUIRED_SOURCES))
def test_primary_source_is_in_the_bibliography_and_cited(key):
    entry = re.search(rf"^@\w+\{{{key},(.*?)^\}}", BIB, re.M | re.S)
    assert entry, f"references.bib lacks {key}"
    assert REQUIRED_SOURCES[key] in entry[1], f"{key} is not the expected work"
    assert key in cited_keys(), f"{key} is in references.bib but no chapter cites it"


def test_every_citation_resolves_and_every_entry_is_cited():
    assert cited_keys() - bib_keys() == set(), "cited keys missing from references.bib"
    assert bib_keys() - cited_keys() == set(), "references.bib entries that nothing cites"


def test_glossary_entries_are_bilingual_and_defined():
    entries = glossary_entries()
    assert len(entries) >= 60, f"only {len(entries)} glossary entries"
    canonical = [e.canonical for e in entries]
    assert len(set(map(str.lower, canonical))) == len(canonical), "duplicate glossary terms"
    chinese = re.compile(r"[\u4e00-\u9fff]")
    names_without_chinese = {"AdamW", "bfloat16"}  # used untranslated in Chinese texts too
    for entry in entries:
        assert entry.canonical.isascii(), f"{entry.canonical}: the English name comes first"
        if entry.canonical not in names_without_chinese:
            assert any(chinese.search(n) for n in entry.names), f"{entry.canonical}: no 中文"
        definition = entry.definition
        assert len(definition.split()) >= 5, f"{entry.canonical}: definition too short"
        assert "Chapter" in definition, f"{entry.canonical}: name the chapter(s)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_use_of_each_key_term_links_to_the_glossary(path):
    markdown = [c.source for c in read(path).cells if c.cell_type == "markdown"]
    problems = first_unlinked_uses(markdown, glossary_entries())
    assert not problems, f"{path.name}: first uses not linked with {{term}}: " + ", ".join(
        f"{term!r} (cell {u.cell}: {u.text!r})" for term, u in problems.items()
    )


def test_every_glossary_entry_is_linked_from_some_chapter():
    linked = {
        target.lower()
        for p in NOTEBOOKS
        for target in term_links([c.source for c in read(p).cells if c.cell_type == "markdown"])
    }
    unused = [e.canonical for e in glossary_entries() if not {n.lower() for n in e.names} & linked]
    assert not unused, f"glossary entries no chapter links to: {unused}"


def exercises(path):
    """(title, hidden solution cell or None) for every '### Exercise' heading of a notebook."""
    cells = read(path).cells
    found = []
    for index, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for match in re.finditer(r"^### (Exercise \d+)", cell.source, re.M):
            rest = cell.source[match.end() :]
            solution = None
            if re.search(r"^:{3,}\{admonition\} Solution[^\n]*\n:class: dropdown", rest, re.M):
                solution = "dropdown"
            elif index + 1 < len(cells):
                following = cells[index + 1]
                tags = set(following.metadata.get("tags", []))
                if following.cell_type == "code" and tags & HIDDEN_TAGS:
                    solution = following
            found.append((match[1], solution))
    return found


@pytest.mark.parametrize("stem", EXERCISE_CHAPTERS)
def test_chapter_has_three_exercises_with_hidden_solutions(stem):
    path = ROOT / "notebooks" / f"{stem}.ipynb"
    found = exercises(path)
    assert len(found) >= 3, f"{stem}: {len(found)} exercises, need at least 3"
    for title, solution in found:
        assert solution is not None, f"{stem}: {title} has no hidden solution"
        if solution != "dropdown":  # code solutions run in the build and check themselves
            assert "assert" in solution.source or "print" in solution.source, (
                f"{stem}: {title}'s solution neither prints nor checks anything"
            )


def run_setup_cell(source: str, on_colab: bool) -> list[tuple[str, str]]:
    """Execute a notebook's setup cell as IPython would; return the magics it ran."""
    calls: list[tuple[str, str]] = []
    namespace: dict = {}
    # IPython's run_line_magic expands {name} in the line from the caller's variables.
    shell = types.SimpleNamespace(
        run_line_magic=lambda name, line: calls.append((name, line.format(**namespace)))
    )
    namespace["get_ipython"] = lambda: shell
    python = TransformerManager().transform_cell(source)
    saved = sys.modules.pop("google.colab", None)
    if on_colab:
        sys.modules["google.colab"] = types.ModuleType("google.colab")
    try:
        exec(compile(python, "<setup cell>", "exec"), namespace)
    finally:
        sys.modules.pop("google.colab", None)
        if saved is not None:
            sys.modules["google.colab"] = saved
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_setup_cell_installs_course_lib_on_colab_only(path):
    source = code_cells(read(path))[0].source
    assert run_setup_cell(source, on_colab=False) == [], f"{path.name}: setup acts off Colab"
    calls = run_setup_cell(source, on_colab=True)
    repo = config()["repository"]
    expected = f'install -q "course_lib @ git+{repo["url"]}@{repo["branch"]}"'
    assert calls == [("pip", expected)], f"{path.name}: setup cell on Colab ran {calls}"


def test_readme_opens_every_chapter_in_colab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repo = config()["repository"]
    slug = repo["url"].removeprefix("https://github.com/")
    for entry in (f for f in toc_files() if f.startswith("notebooks/")):
        url = f"https://colab.research.google.com/github/{slug}/blob/{repo['branch']}/{entry}.ipynb"
        assert f"]({url})" in readme, f"README has no Open-in-Colab link for {entry}"


def test_execution_report_page_is_in_the_book():
    assert "book/execution-report" in toc_files()
    text = (ROOT / "book" / "execution-report.md").read_text(encoding="utf-8")
    assert "```{nb-exec-table}" in text
