"""Reader-facing rules of the book's sources: glossary entries, first-use links, exercises.

Used by tests/test_reader.py. The glossary (book/glossary.md) is a set of MyST ``{glossary}``
blocks; each entry has one or more term lines (English, then Chinese) and an indented
definition. The rule "the first use of a key term in a chapter links to the glossary" is checked
on the Markdown cells of every chapter notebook, ignoring text where a link cannot go: code,
math, headings, links, HTML, directive lines and other roles.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"

_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n.*?^\1[ \t]*$", re.M | re.S)
_MASKED_INLINE = [
    re.compile(r"^#{1,6} .*$", re.M),  # headings
    re.compile(r"^[ \t]*(:{3,}|`{3,}).*$", re.M),  # directive fences and their titles
    re.compile(r"^[ \t]*:[\w-]+:.*$", re.M),  # directive options (:class: dropdown)
    re.compile(r"^\([\w-]+\)=[ \t]*$", re.M),  # MyST labels
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"(?<![\\$])\$(?!\$)[^$\n]+?\$"),  # inline math
    re.compile(r"``.+?``|`[^`\n]+`"),  # inline code (roles are handled first)
    re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)"),  # links and images
    re.compile(r"<[^<>\n]+>"),  # HTML and autolinks
    re.compile(r"https?://\S+"),  # bare URLs (linkify)
]
ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<body>[^`]*)`")


class Entry(NamedTuple):
    """A glossary entry: its canonical (first) term, every name it can be linked by, and its
    definition."""

    canonical: str
    names: tuple[str, ...]
    definition: str

    @property
    def english(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n.isascii())


def glossary_entries(path: Path = GLOSSARY) -> list[Entry]:
    """Parse the ``{glossary}`` blocks of book/glossary.md."""
    entries: list[Entry] = []
    text = path.read_text(encoding="utf-8")
    for block in re.findall(r"^```\{glossary\}[^\n]*\n(.*?)^```", text, re.M | re.S):
        terms: list[str] = []
        for line in block.splitlines():
            if not line.strip():
                continue
            if line[0].isspace():  # the definition: closes the entry
                if terms:
                    entries.append(Entry(terms[0], tuple(terms), line.strip()))
                terms = []
            else:
                terms.append(line.strip())
    return entries


def role_target(body: str) -> str:
    """The target of a role body: ``text <target>`` or just ``target``."""
    match = re.fullmatch(r"(?s)(.*?)\s*<([^<>]+)>", body)
    return (match[2] if match else body).strip()


def masked(text: str) -> str:
    """``text`` with every span where a term link cannot go replaced by spaces (same length)."""
    chars = list(text)

    def blank(start: int, end: int) -> None:
        chars[start:end] = " " * (end - start)

    for match in _FENCE.finditer(text):
        blank(*match.span())
    for match in ROLE.finditer("".join(chars)):
        blank(*match.span())
    for pattern in _MASKED_INLINE:
        for match in pattern.finditer("".join(chars)):
            blank(*match.span())
    return "".join(chars)


def term_pattern(name: str) -> re.Pattern:
    """A use of ``name`` as a word, singular or plural, any case."""
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?:s|es)?(?![\w-])", re.I)


class Use(NamedTuple):
    cell: int
    offset: int
    text: str


def first_unlinked_uses(cells: list[str], entries: list[Entry]) -> dict[str, Use]:
    """Entries whose first use in ``cells`` (Markdown sources, in order) comes before any
    ``{term}`` link to them: canonical term -> that first use."""
    problems: dict[str, Use] = {}
    for entry in entries:
        names = {n.lower() for n in entry.names}
        for index, source in enumerate(cells):
            linked = [
                m.start()
                for m in ROLE.finditer(source)
                if m["name"] == "term" and role_target(m["body"]).lower() in names
            ]
            plain = masked(source)
            uses = [m for n in entry.english for m in term_pattern(n).finditer(plain)]
            first_use = min((m.start() for m in uses), default=None)
            first_link = min(linked, default=None)
            if first_link is not None and (first_use is None or first_link < first_use):
                break  # linked before (or without) any plain use: fine for this chapter
            if first_use is not None:
                match = min(uses, key=lambda m: m.start())
                problems[entry.canonical] = Use(index, match.start(), match.group(0))
                break
    return problems


def term_links(cells: list[str]) -> list[str]:
    """Targets of every ``{term}`` role in ``cells``."""
    return [
        role_target(m["body"])
        for source in cells
        for m in ROLE.finditer(source)
        if m["name"] == "term"
    ]
