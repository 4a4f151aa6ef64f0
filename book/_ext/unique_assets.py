"""Sphinx extension: each script and stylesheet appears once per page.

With Sphinx 7 and Jupyter Book 1, sphinx-thebe and sphinx-togglebutton register their inline
configuration scripts twice, so every page declared ``const THEBE_JS_URL`` twice and the
browser reported ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``
(found by tests/test_browser.py). This removes exact duplicates just before each page is
written, keeping the first occurrence and the order.
"""

from __future__ import annotations


def _key(asset) -> tuple:
    if isinstance(asset, str):
        return (asset,)
    attributes = getattr(asset, "attributes", {}) or {}  # inline scripts: filename None or ""
    return (getattr(asset, "filename", None) or "", tuple(sorted(attributes.items())))


def remove_duplicate_assets(app, pagename, templatename, context, doctree) -> None:
    for name in ("script_files", "css_files"):
        assets = context.get(name)
        if not assets:
            continue
        seen: set[tuple] = set()
        unique = []
        for asset in assets:
            key = _key(asset)
            if key not in seen:
                seen.add(key)
                unique.append(asset)
        context[name] = unique


def setup(app):
    app.connect("html-page-context", remove_duplicate_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
