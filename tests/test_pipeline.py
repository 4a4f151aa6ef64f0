"""The build and test pipeline itself (Makefile, tools/, book/_ext, the nbval sanitizer, the
repository's documents): what `make test` relies on, checked without running it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns
from notebook_rules import ROOT

from course_lib.timing import TIMER_MARK as MARK
from course_lib.timing import stamp, stamp_ratio
from tools import chromium, notebook_cache

SANITIZER = ROOT / "tests" / "nbval_sanitize.cfg"
NBVAL_IGNORE_TAG = "nbval-ignore-output"  # nbval skips comparing such a cell's outputs


def sanitize(text: str) -> str:
    """``text`` as nbval sees it after tests/nbval_sanitize.cfg (same parser, same order)."""
    for regex, replace in get_sanitize_patterns(SANITIZER.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


# --- outputs never stale -------------------------------------------------------------------


def make_project(root: Path) -> Path:
    (root / "course_lib" / "__pycache__").mkdir(parents=True)
    (root / "course_lib" / "train.py").write_text("LR = 0.1\n")
    (root / "course_lib" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (root / "requirements.txt").write_text("torch>=2.4\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "README.md").write_text("# x\n")
    return root


@pytest.mark.parametrize(
    "changed", ["course_lib/train.py", "course_lib/new_module.py", "requirements.txt",
                "pyproject.toml"],  # fmt: skip
)
def test_inputs_digest_changes_with_the_library_and_requirements(tmp_path, changed):
    root = make_project(tmp_path)
    before = notebook_cache.inputs_digest(root)
    if (root / changed).exists():
        (root / changed).write_text((root / changed).read_text())
        assert notebook_cache.inputs_digest(root) == before, "the same bytes changed it"
    with (root / changed).open("a") as file:
        file.write("# changed\n")
    assert notebook_cache.inputs_digest(root) != before, f"a change to {changed} went unseen"


def test_inputs_digest_ignores_bytecode_and_other_files(tmp_path):
    root = make_project(tmp_path)
    before = notebook_cache.inputs_digest(root)
    (root / "course_lib" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\1")
    (root / "README.md").write_text("# y\n")
    assert notebook_cache.inputs_digest(root) == before


def test_a_stale_cache_is_deleted_and_a_fresh_one_kept(tmp_path):
    cache = tmp_path / ".jupyter_cache"
    assert not notebook_cache.sync_cache(cache, "a" * 64)  # nothing there yet: nothing deleted
    (cache / "global.db").write_text("outputs computed with library a")
    assert not notebook_cache.sync_cache(cache, "a" * 64)
    assert (cache / "global.db").is_file()
    assert notebook_cache.sync_cache(cache, "b" * 64)  # the library changed
    assert not (cache / "global.db").exists()
    assert notebook_cache.stored_digest(cache) == "b" * 64


def test_a_cache_from_before_the_digest_existed_is_deleted(tmp_path):
    cache = tmp_path / ".jupyter_cache"
    cache.mkdir()
    (cache / "global.db").write_text("old")
    assert notebook_cache.sync_cache(cache, "a" * 64)
    assert not (cache / "global.db").exists()


def load_extension(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_env(tmp_path, mode="cache"):
    docs = {"book/intro": "book/intro.md", "notebooks/a": "notebooks/a.ipynb"}
    config = SimpleNamespace(execution_mode=mode, execution_cache_path=str(tmp_path / "cache"))
    return SimpleNamespace(mystnb_config=config, found_docs=set(docs),
                           doc2path=lambda d: str(tmp_path / docs[d]))  # fmt: skip


def test_the_build_rereads_every_notebook_when_the_inputs_change(tmp_path, monkeypatch):
    """Sphinx re-reads only pages whose own file changed: the extension adds every notebook
    when the library changed, once, and empties the jupyter-cache."""
    extension = load_extension("notebook_cache")
    env = fake_env(tmp_path)
    monkeypatch.setattr(extension.notebook_cache, "inputs_digest", lambda root: "a" * 64)
    assert extension.outdated_by_inputs(None, env, set(), set(), set()) == ["notebooks/a"]
    (tmp_path / "cache" / "global.db").write_text("outputs of library a")
    assert extension.outdated_by_inputs(None, env, set(), set(), set()) == []
    assert (tmp_path / "cache" / "global.db").is_file()
    monkeypatch.setattr(extension.notebook_cache, "inputs_digest", lambda root: "b" * 64)
    assert extension.outdated_by_inputs(None, env, set(), set(), set()) == ["notebooks/a"]
    assert not (tmp_path / "cache" / "global.db").exists()
    forced = fake_env(tmp_path, "force")  # MyST-NB executes everything anyway: nothing to do
    assert extension.outdated_by_inputs(None, forced, set(), set(), set()) == []


def test_export_refuses_outputs_of_an_older_library(tmp_path):
    cache = tmp_path / "cache"
    notebook_cache.sync_cache(cache, "0" * 64)
    with pytest.raises(RuntimeError, match="make book"):
        notebook_cache.export_executed([], tmp_path / "out", cache)


def test_notebooks_execute_in_parallel_into_the_cache_and_export_for_nbval(tmp_path):
    """Two notebooks (one with a cell that must raise) executed two at a time, cached, found by
    the cache as MyST-NB looks them up, and exported with their outputs."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    paths = []
    for i in range(2):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
            "name": "python3", "display_name": "Python 3", "language": "python"}})  # fmt: skip
        nb.cells = [
            nbformat.v4.new_markdown_cell("# t"),
            nbformat.v4.new_code_cell(f"print({i} + 1)"),
            nbformat.v4.new_code_cell("1 / 0", metadata={"tags": ["raises-exception"]}),
        ]
        paths.append(folder / f"n{i}.ipynb")
        nbformat.write(nb, paths[-1])
    cache = tmp_path / "cache"
    notebook_cache.sync_cache(cache)
    runs = notebook_cache.execute_into_cache(paths, cache, jobs=2, log=lambda m: None)
    assert [r.error for r in runs] == [None, None]
    assert notebook_cache.execute_into_cache(paths, cache, log=lambda m: None) == []  # cached
    assert set(notebook_cache.cached_seconds(paths, cache).values()) != {None}
    written = notebook_cache.export_executed(paths, tmp_path / "out", cache, source_dir=folder)
    executed = nbformat.read(written[1], as_version=4)
    printed, raising = executed.cells[1], executed.cells[2]
    assert printed.outputs[0]["text"] == "2\n" and printed.execution_count == 1
    assert raising.outputs[0]["output_type"] == "error"
    for cell in executed.cells:  # nbval compares every output: no cell is exempted
        assert NBVAL_IGNORE_TAG not in cell.get("metadata", {}).get("tags", [])


def test_no_notebook_cell_escapes_the_output_comparison():
    """Times are masked by the sanitizer, not whole cells: no cell carries nbval's
    ignore-output tag or the retired ``timing`` tag that the export used to turn into it."""
    tagged = [
        f"{path.name} cell {index}: {tag}"
        for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells)
        for tag in cell.get("metadata", {}).get("tags", [])
        if tag in {NBVAL_IGNORE_TAG, "timing"} or tag.startswith("nbval-skip")
    ]
    assert tagged == [], f"cells exempt from nbval's comparison: {tagged}"


def nbval_options() -> list[str]:
    """The Makefile's NBVAL_OPTIONS (continuation lines joined)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    return re.search(r"^NBVAL_OPTIONS := (.*)$", makefile, re.M)[1].split()


def test_nbval_strict_mode_as_make_runs_it(tmp_path):
    """A notebook executed as the build does, then by nbval with the Makefile's options: a
    time printed after the mark and a trailing ``;`` pass; a cell tagged ``raises-exception``
    that no longer raises, or a result that changed, fails."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cells = [
        "import os, random",  # stamp()'s format, without importing torch (a faster test)
        "print(f'accuracy {0.93 if not os.environ.get(\"DRIFT\") else 0.94}, '\n"
        "      f'took \u23f1 {random.random() * 100:.3g} ms')",
        "sum([1, 2]);",  # its value hidden by the ";"
        "if not os.environ.get('QUIET'):\n    raise ValueError('lr must be > 0, got -1')",
    ]
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})  # fmt: skip
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[-1].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, folder / "t.ipynb")
    cache = tmp_path / "cache"
    notebook_cache.sync_cache(cache)
    notebook_cache.execute_into_cache([folder / "t.ipynb"], cache, log=lambda m: None)
    (executed,) = notebook_cache.export_executed([folder / "t.ipynb"], tmp_path / "out", cache,
                                                 source_dir=folder)  # fmt: skip
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *nbval_options(), str(executed)]  # fmt: skip

    def run(**env):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, **env})  # fmt: skip
        return result.returncode, result.stdout[-3000:]

    code, output = run()
    assert code == 0, output
    code, output = run(QUIET="1", DRIFT="1")  # two failing cells, one nbval run
    assert code == 1 and "Missing output fields" in output, output  # raises no more
    assert "accuracy 0.93" in output and "2 failed" in output, output  # a result changed


# --- the sanitizer masks wall-clock numbers and nothing else -------------------------------


@pytest.mark.parametrize("seconds", [0, 4e-10, 3.21e-6, 0.0123, 0.5, 1, 59.9, 1234.5])
def test_stamped_times_are_masked_entirely(seconds):
    line = f"dense {stamp(seconds)} per batch, accuracy 0.9345"
    assert sanitize(line) == f"dense {MARK} [time] per batch, accuracy 0.9345"


def test_timed_ratios_are_masked_and_results_beside_them_compared():
    line = f"pruned: {stamp_ratio(1.834)} faster, 90% sparse, accuracy 0.912 (n=360)"
    assert sanitize(line) == f"pruned: {MARK} [time]× faster, 90% sparse, accuracy 0.912 (n=360)"
    assert sanitize(f"{stamp_ratio(1.8)} at 0.91") != sanitize(f"{stamp_ratio(2.1)} at 0.92")


def test_text_decided_by_a_clock_is_masked_in_brackets():
    left = f"latency front: {MARK}[structured ½ + int8, int8]; size front: int8"
    right = f"latency front: {MARK}[structured ½, int8]; size front: int8"
    assert sanitize(left) == sanitize(right) == f"latency front: {MARK}[timed]; size front: int8"


def test_unmarked_numbers_are_compared():
    for text in ["12.3 ms", "1.83×", "accuracy 0.93", "step 100: loss 0.2311", "1,797 digits"]:
        assert sanitize(text) == text


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("<Net at 0x7f3a5c2b1d90>", "<Net at 0x7f00aa11bb22>"),
        ('<td id="T_8f3a2_row0_col0">', '<td id="T_01bc4_row0_col0">'),
        ("W1201 09:39:28.388000 9367 torch/x.py:1] No", "W1202 10:00:00.1 12 torch/x.py:1] No"),
        ("epochs: 100%|#| 5/5 [00:01<00:00,  3.5it/s]", "epochs: 100%|#| 5/5 [00:02<00:00, 2it/s]"),
        ("Writing _generated/ddp.py", "Overwriting _generated/ddp.py"),
        (f"arm  {stamp(0.0123)}  0.93", f"arm  {stamp(0.5)}     0.93"),  # text-table padding
    ],
)  # fmt: skip
def test_run_to_run_noise_is_masked(left, right):
    assert sanitize(left) == sanitize(right)


def test_sanitizer_is_ascii_and_every_pattern_compiles():
    text = SANITIZER.read_bytes()
    assert text.isascii(), "nbval reads the sanitizer with the locale's encoding: keep it ASCII"
    patterns = get_sanitize_patterns(text.decode())
    assert len(patterns) == text.decode().count("\nregex: ")
    for regex, _ in patterns:
        re.compile(regex)


# --- the environment make sets up -----------------------------------------------------------


def test_jupyter_lab_runs_in_the_environment():
    jupyter = Path(sys.executable).parent / "jupyter"
    result = subprocess.run([str(jupyter), "lab", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", result.stdout.strip()), result.stdout


def test_chromium_is_looked_for_in_the_documented_order(tmp_path):
    browser = tmp_path / "chrome"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    system = {"google-chrome": "/usr/bin/google-chrome"}
    find = chromium.find_chromium
    assert find({"COURSE_CHROMIUM": str(browser)}, system.get, lambda: "pw") == str(browser)
    assert find({}, system.get, lambda: "pw") == "/usr/bin/google-chrome"
    assert find({}, {}.get, lambda: "/pw/chrome") == "/pw/chrome"
    assert find({}, {}.get, lambda: None) is None
    with pytest.raises(FileNotFoundError, match="COURSE_CHROMIUM must be an executable file"):
        find({"COURSE_CHROMIUM": str(tmp_path / "missing")}, system.get, lambda: None)


def test_the_install_advice_is_a_command():
    command = chromium.install_command()
    assert command.startswith(("sudo apt-get install -y chromium", "brew ", sys.executable))


# --- make: targets depend on what they check ------------------------------------------------


def make_rules() -> dict[str, list[str]]:
    rules = {}
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([\w.-]+):(?!=)\s*([^#|]*)", line)
        if match:
            rules[match[1]] = match[2].split()
    return rules


def test_checks_of_the_book_depend_on_the_book():
    rules = make_rules()
    for target in ("nbval", "book-check", "browser"):
        assert "book" in rules[target], f"`make -j {target}` could check a book not built yet"
    assert "chromium" in rules["browser"]
    assert rules["test"] == ["lint", "unit", "book", "nbval", "book-check", "browser"]
    assert "repro" not in rules


def test_nbval_is_strict_parallel_and_sanitized():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--nbval-lax" not in makefile
    assert "--nbval " in makefile and "--nbval-sanitize-with tests/nbval_sanitize.cfg" in makefile
    assert "-n $(JOBS) --dist loadfile" in makefile  # a notebook's cells stay in one worker


def test_ci_runs_make_test_and_nothing_else():
    lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]


# --- the repository's documents --------------------------------------------------------------


def test_license_matches_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = "MIT"$', pyproject, re.M)
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("document", ["README.md", "CONTRIBUTING.md"])
def test_relative_links_resolve(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    broken = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not followed offline
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else ROOT / document
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(f"{target}: no heading #{anchor} in {path or document}")
    assert not broken, f"{document}: " + "; ".join(broken)


# A path into the repository, as documents, docstrings and tests write them.
FILE_REFERENCE = re.compile(
    r"(?<![\w/.-])((?:tests|tools|benchmarks|book|course_lib|notebooks|\.ci|\.github)"
    r"/[\w./<>*{}-]*[\w>*}])"
)
UPPERCASE_DOCUMENT = re.compile(r"(?<![\w/.-])([A-Z]+\.md)\b")


def reference_resolves(reference: str) -> bool:
    """A file or folder; a page's name without suffix (a TOC entry); a built page's source."""
    path = ROOT / reference
    stem = path.with_suffix("") if path.suffix == ".html" else path
    candidates = [path, stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".ipynb")]
    return any(c.exists() for c in candidates)


def documents_and_sources() -> list[Path]:
    sources = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "Makefile", ".ci/run")]
    for folder in ("course_lib", "tests", "tools", "benchmarks", "book/_ext"):
        sources += sorted((ROOT / folder).rglob("*.py"))
    return sources


def test_every_file_reference_resolves():
    """Every repository path named in the README, CONTRIBUTING, the Makefile, docstrings and
    tests exists (placeholders such as ``notebooks/X.ipynb`` and globs are not paths)."""
    missing = []
    for source in documents_and_sources():
        if source == Path(__file__):
            continue  # its examples name files that need not exist
        text = source.read_text(encoding="utf-8")
        references = FILE_REFERENCE.findall(text) + UPPERCASE_DOCUMENT.findall(text)
        for reference in references:
            reference = reference.rstrip(".")
            if re.search(r"[*<{]|/X\.|/NAME", reference) or reference.startswith("_build"):
                continue
            if not reference_resolves(reference):
                missing.append(f"{source.relative_to(ROOT)}: {reference}")
    assert not missing, "references to files that do not exist:\n" + "\n".join(missing)
