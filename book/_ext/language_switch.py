"""Sphinx extension: a language switch in each page's header, linking the page to its translation.

The English site is ``_build/html``; the Chinese edition (``tools/translations.py``), built
from the same sources with ``language = "zh_CN"``, is ``_build/html/zh``. Each page gets a
button in the article header (the book theme's ``article_header_end``, before its own
buttons) that links to the same page in the other edition, and a ``<link rel="alternate"
hreflang>`` in its head. Template: ``book/_templates/language-switch.html``.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "_templates"
STATIC = Path(__file__).resolve().parents[1] / "_static"  # language-switch.css
TEMPLATE = "language-switch.html"
# language of a build -> (folder of the other edition, relative to this edition's root,
#                         its hreflang, its button label, the button's tooltip)
EDITIONS = {
    "en": ("zh/", "zh-CN", "中文", "本页的中文版"),
    "zh_CN": ("../", "en", "English", "This page in English"),
}


def translation_href(pagename: str, language: str) -> str | None:
    """The relative URL of ``pagename``'s translation, seen from ``pagename`` itself."""
    if language not in EDITIONS:
        return None
    other_root = EDITIONS[language][0]
    up = "../" * pagename.count("/")
    return f"{up}{other_root}{pagename}.html"


def add_to_header(app, config) -> None:
    config.templates_path = [*config.templates_path, str(TEMPLATES)]
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    options = config.html_theme_options
    end = list(options.get("article_header_end") or ["article-header-buttons.html"])
    if TEMPLATE not in end:
        options["article_header_end"] = [TEMPLATE, *end]


def page_context(app, pagename, templatename, context, doctree) -> None:
    language = app.config.language or "en"
    href = translation_href(pagename, language)
    if href is None:
        context["course_translation"] = None
        return
    _, hreflang, label, title = EDITIONS[language]
    context["course_translation"] = {
        "href": href,
        "hreflang": hreflang,
        "label": label,
        "title": title,
    }
    context["metatags"] = (
        context.get("metatags", "")
        + f'\n<link rel="alternate" hreflang="{hreflang}" href="{href}" />'
    )


def setup(app):
    app.connect("config-inited", add_to_header)
    app.add_css_file("language-switch.css")
    # Before the theme drops header templates that render empty (pydata-sphinx-theme).
    app.connect("html-page-context", page_context, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
