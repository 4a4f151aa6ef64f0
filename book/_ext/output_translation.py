"""Sphinx extension: the Chinese edition translates what Sphinx's gettext leaves in English.

1. What cells print as Markdown at run time (below).
2. The captions of the TOC's parts ("Core algorithms"): sphinx-external-toc inserts its
   toctrees after Sphinx's own translation step, so their captions (extracted as messages of
   the root page) are translated here, from the same catalogue, right after they are inserted.

The notebooks' Markdown outputs are not in the sources, so gettext never sees them. In a build
whose ``language`` is not English, this extension loads the output templates' translations
(``locales/<language>/LC_MESSAGES/outputs/**/*.po``, see ``tools/translations.py``) and wraps
MyST-NB's renderer of ``text/markdown`` outputs: each block of an output whose template
(numbers replaced by slots ⟦0⟧, ⟦1⟧ …) has a translation is replaced by that translation
filled with the block's own numbers, before MyST parses it. A block without a translation
stays English (book-check's drift test fails on it). The English build is unchanged.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from myst_nb.core.render import NbElementRenderer  # noqa: E402
from sphinx import addnodes  # noqa: E402
from sphinx.locale import init as init_locale  # noqa: E402
from sphinx.transforms import SphinxTransform  # noqa: E402
from sphinx.util.i18n import docname_to_domain  # noqa: E402

from tools import translations  # noqa: E402

_ORIGINAL = NbElementRenderer.render_markdown
_TABLE: dict[str, str] = {}


def _render_translated(self, data):
    if _TABLE and isinstance(data.content, str):
        text = translations.translate_output(data.content, _TABLE)
        if text != data.content:
            data = dataclasses.replace(data, content=text)
    return _ORIGINAL(self, data)


def load(app) -> None:
    language = app.config.language or "en"
    _TABLE.clear()
    if language.startswith("en"):
        NbElementRenderer.render_markdown = _ORIGINAL
        return
    _TABLE.update(translations.output_translations(ROOT / "locales", language))
    NbElementRenderer.render_markdown = _render_translated


class TranslateTocCaptions(SphinxTransform):
    """Translate the captions of the toctrees that sphinx-external-toc inserted (priority 100)."""

    default_priority = 101

    def apply(self, **kwargs) -> None:
        language = self.config.language or "en"
        if language.startswith("en"):
            return
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [str(Path(self.env.srcdir) / d) for d in self.config.locale_dirs]
        catalog, found = init_locale(dirs, language, domain)
        if not found:
            return
        for node in self.document.findall(addnodes.toctree):
            caption = node.get("caption")
            if caption and catalog.gettext(caption) != caption:
                node["caption"] = node["rawcaption"] = catalog.gettext(caption)


def setup(app):
    app.connect("builder-inited", load)
    app.add_transform(TranslateTocCaptions)
    # a new version makes Sphinx re-read every page (the transform runs at read time)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
