"""The Chinese edition (中文版): one English source, translations kept in gettext catalogues.

Sphinx's internationalisation, which Jupyter Book 1 builds on, does the work:

* :func:`extract`: the ``gettext`` builder writes one ``.pot`` catalogue per page of the TOC
  (prose pages and the Markdown cells of the notebooks) to ``_build/gettext``. Notebooks are
  *not* executed for this (``nb_execution_mode = "off"``): the messages are the text the
  authors wrote, never the outputs that cells print at run time (those stay English: numbers
  and names).
* :func:`update`: ``sphinx-intl update`` merges the ``.pot`` files into the repository's
  catalogues ``locales/zh_CN/LC_MESSAGES/<page>.po``: a new English message arrives with an
  empty translation, a changed one keeps its old translation marked *fuzzy*, a deleted one
  is dropped (a catalogue entry that matches no message is reported *obsolete*).
* :func:`coverage`: every message of the current English text against the catalogues —
  translated, missing, fuzzy, obsolete. ``tests/test_translations.py`` fails unless all of
  them are translated and none is fuzzy or obsolete, so a change to an English sentence forces
  its Chinese sentence to be updated in the same change.
* :func:`build`: the Chinese site, from the same sources and the same executed notebooks
  (the book's jupyter-cache), into ``_build/html/zh`` beside the English pages.

Sentences that cells print as Markdown at run time are catalogued as templates (their numbers
replaced by slots) under ``locales/zh_CN/LC_MESSAGES/outputs/``; see :func:`output_template`.

Usage: ``python tools/translations.py extract|update|check|lint|build``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder is sys.path[0], and its notebook_cache.py would shadow the
# Sphinx extension of the same name in book/_ext.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
LANGUAGE = "zh_CN"
LOCALES = ROOT / "locales"
POT_DIR = ROOT / "_build" / "gettext"
HTML_DIR = ROOT / "_build" / "html"
ZH_HTML_DIR = HTML_DIR / "zh"
CACHE_DIR = ROOT / "_build" / ".jupyter_cache"
ZH_TITLE = "优化深度学习模型——可执行课程"
ZH_PROMPT_SHOW, ZH_PROMPT_HIDE = "展开代码单元", "收起代码单元"


def _build(
    outdir: Path,
    doctreedir: Path,
    builder: str,
    overrides: dict,
    *,
    quiet: bool = False,
    warningiserror: bool = False,
    source: Path = ROOT,
) -> int:
    """One Sphinx build of the book in ``source`` with Jupyter Book's configuration."""
    from jupyter_book.sphinx import build_sphinx

    confoverrides = {
        "external_toc_path": "_toc.yml",
        "latex_individualpages": False,
        **overrides,
    }
    result = build_sphinx(
        source,
        outdir,
        noconfig=True,
        path_config=str(source / "_config.yml"),
        confoverrides=confoverrides,
        doctreedir=doctreedir,
        builder=builder,
        quiet=quiet,
        warningiserror=warningiserror,
        keep_going=warningiserror,
    )
    if isinstance(result, Exception):
        raise result
    return int(result)


def extract(pot_dir: Path = POT_DIR, *, source: Path = ROOT, quiet: bool = True) -> Path:
    """Write the English messages of every page to ``pot_dir`` (``<page>.pot``)."""
    pot_dir = Path(pot_dir)
    status = _build(
        pot_dir,
        pot_dir.parent / ".doctrees-gettext",
        "gettext",
        {"nb_execution_mode": "off"},
        quiet=quiet,
        source=source,
    )
    if status:
        raise RuntimeError(f"the gettext build of {source} failed (status {status})")
    return pot_dir


def update(
    pot_dir: Path = POT_DIR, locales: Path = LOCALES, *, source: Path = ROOT
) -> dict:
    """Extract the messages, then merge them into ``locales/zh_CN/LC_MESSAGES/*.po``."""
    extract(pot_dir, source=source)
    return _merge(pot_dir, locales)


def _merge(pot_dir: Path, locales: Path) -> dict:
    from sphinx_intl import basic

    return basic.update(
        str(locales), str(pot_dir), (LANGUAGE,), ignore_obsolete=True, jobs=1
    )


@dataclass
class Coverage:
    """Messages of the English text (``.pot``) against their translations (``.po``)."""

    total: int = 0
    translated: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)  # (page, msgid)
    fuzzy: list[tuple[str, str]] = field(default_factory=list)
    obsolete: list[tuple[str, str]] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.translated / self.total if self.total else 100.0

    @property
    def complete(self) -> bool:
        return (
            self.translated == self.total and not self.fuzzy and not self.obsolete
        )

    def summary(self) -> str:
        return (
            f"{LANGUAGE}: {self.translated}/{self.total} messages translated "
            f"({self.percent:.1f} %), {len(self.missing)} missing, "
            f"{len(self.fuzzy)} fuzzy, {len(self.obsolete)} obsolete"
        )

    def problems(self, limit: int = 20) -> str:
        lines = []
        for kind, entries in (
            ("missing", self.missing),
            ("fuzzy", self.fuzzy),
            ("obsolete", self.obsolete),
        ):
            for page, msgid in entries[:limit]:
                lines.append(f"  {kind:8} {page}: {msgid[:90]!r}")
        return "\n".join(lines)


def _read(path: Path):
    from babel.messages.pofile import read_po

    with open(path, "rb") as handle:
        return read_po(handle, locale=LANGUAGE if path.suffix == ".po" else None)


def _msgid(message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def coverage(pot_dir: Path = POT_DIR, locales: Path = LOCALES) -> Coverage:
    """Compare every message of ``pot_dir`` with the catalogues under ``locales``."""
    pot_dir, po_dir = Path(pot_dir), Path(locales) / LANGUAGE / "LC_MESSAGES"
    result = Coverage()
    pages = set()
    for pot in sorted(pot_dir.rglob("*.pot")):
        page = pot.relative_to(pot_dir).with_suffix("").as_posix()
        pages.add(page)
        po_path = po_dir / f"{page}.po"
        catalog = _read(po_path) if po_path.is_file() else None
        messages = [message for message in _read(pot) if message.id]
        for message in messages:
            msgid = _msgid(message)
            result.total += 1
            entry = catalog.get(message.id) if catalog is not None else None
            if entry is None or not entry.string:
                result.missing.append((page, msgid))
            elif entry.fuzzy:
                result.fuzzy.append((page, msgid))
            else:
                result.translated += 1
        if catalog is not None:
            wanted = {m.id for m in messages}
            for message in catalog:
                if message.id and message.id not in wanted:
                    result.obsolete.append((page, _msgid(message)))
            for message in catalog.obsolete.values():
                result.obsolete.append((page, _msgid(message)))
    folders = {page.split("/")[0] for page in pages}  # book/ and notebooks/, or outputs/
    for po_path in sorted(po_dir.rglob("*.po")) if po_dir.is_dir() else []:
        page = po_path.relative_to(po_dir).with_suffix("").as_posix()
        if page.split("/")[0] in folders and page not in pages:
            result.obsolete.append((page, "(the whole catalogue: no such page)"))
    return result


# What a translation must carry over unchanged from its English message: inline code, math,
# the targets of MyST roles ({term}`shown <target>` keeps target; {cite}`key` keeps key) and
# the URLs of links. The displayed text of a role or a link may be translated.
_CODE = re.compile(r"(?<![`{])(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$(?!\s)[^$\n]+?(?<![\s\\])\$")
_ROLE = re.compile(r"\{([a-z:-]+)\}`([^`]*)`")
_URL = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>\s]+)>")


def _role_targets(text: str) -> list[str]:
    targets = []
    for role, content in _ROLE.findall(text):
        if role in {"term", "doc", "ref", "numref", "download"}:
            match = re.fullmatch(r"(?s).*<([^<>]+)>", content)
            targets.append(f"{role}:{match.group(1) if match else content}")
        else:  # {cite}, {cite:t}, {eq}, {math}: the content itself
            targets.append(f"{role}:{content}")
    return sorted(targets)


def _emphasis(text: str) -> list[str]:
    """Bold and italic spans as Markdown parses them: ``**{term}`x`**中文`` parses as literal
    asterisks (CommonMark's flanking rules: punctuation inside, a letter outside), so a
    translation that glues a marker to a Chinese character loses its bold."""
    from markdown_it import MarkdownIt

    kinds = []
    for token in MarkdownIt("commonmark").parseInline(text):
        kinds += [child.type for child in token.children or [] if child.type.endswith("_open")]
    return sorted(k for k in kinds if k in {"strong_open", "em_open"})


def _invariants(text: str) -> dict[str, list[str]]:
    without_roles = _ROLE.sub(" ", text)
    return {
        "value slots": sorted(set(_SLOT.findall(text))),
        "bold/italic spans": _emphasis(text),
        "inline code": sorted(m.group(0) for m in _CODE.finditer(without_roles)),
        "math": sorted(_MATH.findall(_CODE.sub(" ", without_roles))),
        "role targets": _role_targets(text),
        "link URLs": sorted("".join(m) for m in _URL.findall(text)),
    }


def lint(locales: Path = LOCALES, paths: list[Path] | None = None) -> list[str]:
    """Translations that lost or changed a piece of code, math, a role's target or a URL.

    A role whose target is spelt out may change its shown text ({term}`剪枝 <pruning>` for
    {term}`pruning`), so {term} and {doc} roles are compared by target only.
    """
    po_dir = Path(locales) / LANGUAGE / "LC_MESSAGES"
    problems = []
    for po_path in paths or sorted(po_dir.rglob("*.po")):
        for message in _read(Path(po_path)):
            if not message.id or not message.string:
                continue
            source, translation = _invariants(_msgid(message)), _invariants(message.string)
            for kind, expected in source.items():
                got = translation[kind]
                if kind == "role targets":
                    expected = sorted(_normalise_terms(expected))
                    got = sorted(_normalise_terms(got))
                if expected != got:
                    missing = sorted((Counter(expected) - Counter(got)).elements())
                    extra = sorted((Counter(got) - Counter(expected)).elements())
                    problems.append(
                        f"{Path(po_path).name}: {kind} differ (missing {missing}, "
                        f"extra {extra}) in {_msgid(message)[:70]!r}"
                    )
    return problems


def _normalise_terms(entries: list[str]) -> list[str]:
    """{term}`Pruning` and {term}`pruning` name the same glossary entry (case-insensitive)."""
    return [e.lower() if e.startswith("term:") else e for e in entries]


# --- Sentences that cells print as Markdown at run time -------------------------------------
# They are not in the sources, so the gettext builder never sees them. Each Markdown output of
# the book's executed notebooks (the jupyter-cache) is cut into blocks (paragraphs, lists,
# tables; fenced code is left alone), and each block becomes a *template*: its numbers, and the
# clock-decided text after ⏱ in brackets, replaced by numbered slots ⟦0⟧, ⟦1⟧ … The templates
# are catalogued like the pages (locales/zh_CN/LC_MESSAGES/outputs/<page>.po); the Chinese build
# (book/_ext/output_translation.py) fills each translated template with the block's own values.
# So a result that changes (another seed, a timing) needs no new translation; a sentence that
# changes does, and book-check's drift test says so.
OUTPUTS_POT_DIR = ROOT / "_build" / "gettext-outputs"
OUTPUTS = "outputs"  # catalogue folder of the templates, beside book/ and notebooks/
_SLOT_VALUE = re.compile(
    r"⏱\[[^\]\n]*\]"  # text decided by a clock (tests/nbval_sanitize.cfg, 1b)
    r"|(?<![\w.⟦])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w⟧])"
    r"|(?<![\w.⟦])\.\d+(?![\w⟧])"
)
_SLOT = re.compile(r"⟦(\d+)⟧")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_LETTERS = re.compile(r"[A-Za-z]{2,}")


def output_blocks(markdown: str) -> list[tuple[str, bool]]:
    """``markdown`` cut at blank lines into ``(block, translatable)`` pairs; a fenced code block
    is one untranslatable block. ``"\n\n".join`` of the blocks gives the text back."""
    blocks: list[tuple[str, bool]] = []
    lines: list[str] = []
    fence = None

    def flush() -> None:
        if lines:
            block = "\n".join(lines)
            blocks.append((block, not _FENCE.match(block) and bool(_LETTERS.search(block))))
            lines.clear()

    for line in markdown.split("\n"):
        match = _FENCE.match(line)
        if fence is None and match:
            flush()
            fence = match.group(1)
            lines.append(line)
        elif fence is not None:
            lines.append(line)
            if line.strip().startswith(fence) and len(lines) > 1:
                fence = None
                flush()
        elif line.strip():
            lines.append(line)
        else:
            flush()
    flush()
    return blocks


_PADDING = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
# A table's delimiter row ("|:-------|---:|"), its dashes as wide as the column.
_DELIMITER_ROW = re.compile(
    r"(?m)^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+(?:[ \t]*:?-{3,}:?[ \t]*)?$"
)


def output_template(block: str) -> tuple[str, list[str]]:
    """``block`` with its values replaced by slots: ``("acc ⟦0⟧ (⟦1⟧ seeds)", ["0.95", "5"])``.

    Runs of spaces inside a line become one and a delimiter row's dashes three: a text table
    pads its columns to its widest cell, maybe a time, so its padding changes from run to run
    (Markdown renders it the same). Indentation and trailing spaces (a hard break) are kept."""
    values: list[str] = []

    def slot(match: re.Match) -> str:
        values.append(match.group(0))
        return f"⟦{len(values) - 1}⟧"

    template = _PADDING.sub(" ", _SLOT_VALUE.sub(slot, block))
    return _DELIMITER_ROW.sub(lambda m: re.sub("-{3,}", "---", m.group(0)), template), values


def fill_template(template: str, values: list[str]) -> str:
    """A translated template with the values of the English block put back in its slots."""
    return _SLOT.sub(lambda m: values[int(m.group(1))], template)


def translate_output(markdown: str, translations: dict[str, str]) -> str:
    """A Markdown output with every block whose template has a translation translated."""
    parts = []
    for block, translatable in output_blocks(markdown):
        if translatable:
            template, values = output_template(block)
            translated = translations.get(template)
            if translated and len(values) == len(set(_SLOT.findall(template))):
                block = fill_template(translated, values)
        parts.append(block)
    return "\n\n".join(parts)


def executed_outputs(cache_dir: Path = CACHE_DIR) -> dict[str, list[str]]:
    """The Markdown outputs of every executed notebook of the TOC, by page (``make book``)."""
    import nbformat
    from jupyter_cache import get_cache

    from tools import notebook_cache

    if notebook_cache.stored_digest(cache_dir) != notebook_cache.inputs_digest():
        raise RuntimeError(f"{cache_dir} is stale or missing: run `make book` first")
    sys.path.insert(0, str(ROOT))
    from benchmarks.notebook_times import toc_notebooks

    cache = get_cache(str(cache_dir))
    outputs: dict[str, list[str]] = {}
    for path in toc_notebooks():
        nb = nbformat.read(path, as_version=4)
        try:
            _, executed = cache.merge_match_into_notebook(nb)
        except KeyError:
            raise RuntimeError(f"{path.name}: no executed copy: run `make book`") from None
        page = Path(path).relative_to(ROOT).with_suffix("").as_posix()
        outputs[page] = [
            data["text/markdown"]
            for cell in executed.cells
            if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if isinstance(data := output.get("data", {}), dict) and "text/markdown" in data
        ]
    return outputs


def extract_outputs(pot_dir: Path = OUTPUTS_POT_DIR, cache_dir: Path = CACHE_DIR) -> Path:
    """Write the templates of the executed notebooks' Markdown outputs to
    ``pot_dir/outputs/<page>.pot``."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    pot_dir = Path(pot_dir)
    if pot_dir.exists():
        shutil.rmtree(pot_dir)
    for page, markdowns in executed_outputs(cache_dir).items():
        catalog = Catalog(project="course outputs", fuzzy=False)
        for markdown in markdowns:
            for block, translatable in output_blocks(markdown):
                if translatable:
                    catalog.add(output_template(block)[0])
        if not len(catalog):
            continue
        target = pot_dir / OUTPUTS / f"{page}.pot"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            write_po(handle, catalog, width=76, omit_header=False)
    return pot_dir


def output_translations(locales: Path = LOCALES, language: str = LANGUAGE) -> dict[str, str]:
    """Template -> translation, from every ``outputs`` catalogue (fuzzy ones left out)."""
    table: dict[str, str] = {}
    folder = Path(locales) / language / "LC_MESSAGES" / OUTPUTS
    for po_path in sorted(folder.rglob("*.po")) if folder.is_dir() else []:
        for message in _read(po_path):
            if message.id and message.string and not message.fuzzy:
                table[_msgid(message)] = message.string
    return table


def build(*, quiet: bool = False, out: Path | None = None, execute: bool = True) -> float:
    """Build the Chinese site into ``_build/html/zh``; returns the seconds it took.

    The notebooks' outputs come from the English build's jupyter-cache (run ``make book``
    first, or the build executes what is missing). ``execute=False`` (with ``out``, a
    scratch folder) renders the pages without outputs: a quick check of the translations.
    """
    start = time.perf_counter()
    outdir = Path(out) if out else ZH_HTML_DIR
    overrides = {
        "language": LANGUAGE,
        "html_title": ZH_TITLE,
        "nb_execution_cache_path": str(CACHE_DIR),
        "nitpicky": True,  # as the English build's `jupyter-book build -n`
        # MyST-NB's toggle of hidden cells ("Show code cell source"), in Chinese
        "nb_code_prompt_show": ZH_PROMPT_SHOW,
        "nb_code_prompt_hide": ZH_PROMPT_HIDE,
    }
    if not execute:
        overrides["nb_execution_mode"] = "off"
    doctrees = ROOT / "_build" / ".doctrees-zh" if out is None else outdir / ".doctrees"
    status = _build(outdir, doctrees, "html", overrides, quiet=quiet, warningiserror=True)
    if status:
        raise SystemExit(status)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["extract", "update", "check", "lint", "build"])
    parser.add_argument("files", nargs="*", type=Path, help="lint: these .po files only")
    parser.add_argument("--out", type=Path, help="build: into this folder, not _build/html/zh")
    parser.add_argument(
        "--no-execute", action="store_true", help="build: no notebook outputs (quick check)"
    )
    args = parser.parse_args(argv)
    if args.command == "extract":
        print(f"messages extracted to {extract()}")
    elif args.command == "update":
        print(update())
        print("pages:", coverage().summary())
        try:
            print(_merge(extract_outputs(), LOCALES))
            print("outputs:", coverage(OUTPUTS_POT_DIR).summary())
        except RuntimeError as exc:
            print(f"outputs not updated: {exc}")
    elif args.command == "check":
        status = 0
        for name, pots in (("pages", extract), ("outputs", extract_outputs)):
            try:
                result = coverage(pots())
            except RuntimeError as exc:
                print(f"{name}: not checked: {exc}")
                continue
            print(f"{name}: {result.summary()}")
            if not result.complete:
                print(result.problems())
                status = 1
        return status
    elif args.command == "lint":
        problems = lint(paths=args.files or None)
        print("\n".join(problems) or "translations: code, math, role targets and URLs kept")
        return 1 if problems else 0
    else:
        seconds = build(out=args.out, execute=not args.no_execute)
        where = args.out or ZH_HTML_DIR
        print(f"translations: the {LANGUAGE} edition built in {seconds:.0f} s: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
