"""Sphinx extension: the ``build-info`` directive states when and with what the book was built.

It renders one paragraph: the date of the build (UTC; ``SOURCE_DATE_EPOCH`` if set) and the
versions of Python, PyTorch, torchvision and course_lib it ran with (the notebooks' kernel
is the build's own environment). The pages that use the directive are re-read on every
build, so the date is never that of an earlier build. Used by ``book/execution-report.md``.
"""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

PACKAGES = {"PyTorch": "torch", "torchvision": "torchvision", "course_lib": "course_lib"}
USERS_KEY = "build_info_docs"
ENGLISH = {
    "start": "This copy of the book was built on {when} with ",
    "comma": ", ",
    "and": " and ",
    "end": ", on {system}.",
}
CHINESE = {
    "start": "本书的这一副本构建于 {when}，所用环境为 ",
    "comma": "、",
    "and": " 和 ",
    "end": "，运行于 {system}。",
}


def build_date() -> datetime.datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    return datetime.datetime.now(datetime.timezone.utc)


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def facts() -> list[tuple[str, str]]:
    """(label, value) pairs, in the order the paragraph states them."""
    items = [("Python", platform.python_version())]
    items += [(label, version(name)) for label, name in PACKAGES.items()]
    return items


class BuildInfo(SphinxDirective):
    has_content = False

    def run(self):
        users = getattr(self.env, USERS_KEY, set())
        users.add(self.env.docname)
        setattr(self.env, USERS_KEY, users)
        # Not a gettext message (its date changes with every build): the Chinese edition
        # (tools/translations.py) gets its own wording here instead.
        paragraph = nodes.paragraph(classes=["build-info"], translatable=False)
        when = f"{build_date():%Y-%m-%d %H:%M} UTC"
        chinese = (self.config.language or "").startswith("zh")
        words = CHINESE if chinese else ENGLISH
        paragraph += nodes.Text(words["start"].format(when=when))
        for i, (label, value) in enumerate(facts()):
            if i:
                paragraph += nodes.Text(words["comma"] if i < len(PACKAGES) else words["and"])
            paragraph += nodes.Text(f"{label} ")
            paragraph += nodes.literal(value, value)
        system = f"{platform.system()} {platform.machine()}"
        paragraph += nodes.Text(words["end"].format(system=system))
        return [paragraph]


def always_outdated(app, env, added, changed, removed) -> list[str]:
    return sorted(getattr(env, USERS_KEY, set()) - set(removed))


def purge(app, env, docname) -> None:
    getattr(env, USERS_KEY, set()).discard(docname)


def merge(app, env, docnames, other) -> None:
    setattr(env, USERS_KEY, getattr(env, USERS_KEY, set()) | getattr(other, USERS_KEY, set()))


def setup(app):
    app.add_directive("build-info", BuildInfo)
    app.connect("env-get-outdated", always_outdated)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
