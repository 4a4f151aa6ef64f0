"""Sphinx extension: the Chinese edition translates what cells print as Markdown at run time.

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


def setup(app):
    app.connect("builder-inited", load)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
