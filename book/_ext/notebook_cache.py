"""Sphinx extension: notebooks executed two at a time, and never stale outputs.

MyST-NB's ``cache`` mode executes the notebooks one after the other and keys each on its
code cells only. Before the build reads any page this extension (logic in
``tools/notebook_cache.py``):

1. deletes the jupyter-cache when ``course_lib/``, ``requirements.txt`` or ``pyproject.toml``
   changed since its outputs were computed, and marks every notebook outdated so that Sphinx
   re-reads it too (Sphinx only re-reads a page whose own file changed);
2. executes the notebooks that have no cached outputs ``COURSE_JOBS`` (default 2) at a time
   and caches them; MyST-NB then renders each from the cache.

It does nothing unless ``execute_notebooks`` is ``cache``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.util import logging

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import notebook_cache  # noqa: E402

logger = logging.getLogger(__name__)
ENV_KEY = "course_inputs_digest"  # stored in the pickled environment with the doctrees


def _active(env) -> bool:
    config = getattr(env, "mystnb_config", None)
    return config is not None and config.execution_mode == "cache"


def _notebooks(env, docnames) -> list[str]:
    return [d for d in docnames if Path(env.doc2path(d)).suffix == ".ipynb"]


def outdated_by_inputs(app, env, added, changed, removed) -> list[str]:
    """Every notebook, when the inputs changed since the environment read them."""
    if not _active(env):
        return []
    digest = notebook_cache.inputs_digest(ROOT)
    cache_dir = Path(env.mystnb_config.execution_cache_path)
    if notebook_cache.sync_cache(cache_dir, digest):
        logger.info(f"notebook_cache: course_lib or requirements changed: cleared {cache_dir}")
    if getattr(env, ENV_KEY, None) == digest:
        return []
    setattr(env, ENV_KEY, digest)
    return _notebooks(env, env.found_docs)


def execute_two_at_a_time(app, env, docnames) -> None:
    """Execute, in parallel, the notebooks about to be read that have no cached outputs."""
    if not _active(env):
        return
    config = env.mystnb_config
    excluded = tuple(config.execution_excludepatterns or ())
    paths = [
        Path(env.doc2path(d))
        for d in _notebooks(env, docnames)
        if not any(Path(env.doc2path(d)).match(pattern) for pattern in excluded)
    ]
    notebook_cache.execute_into_cache(
        paths,
        Path(config.execution_cache_path),
        timeout=config.execution_timeout,
        allow_errors=config.execution_allow_errors,
        log=lambda message: logger.info(f"notebook_cache: {message}"),
    )


def setup(app):
    app.connect("env-get-outdated", outdated_by_inputs)
    app.connect("env-before-read-docs", execute_two_at_a_time)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
