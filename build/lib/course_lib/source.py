"""Show the library's real code in a notebook: one source of truth, never a copy (every chapter)."""

from __future__ import annotations

import inspect
import textwrap


def source_markdown(obj) -> str:
    """The source of ``obj`` (function, class or method) as a fenced ``python`` Markdown block,
    headed by the file it lives in, e.g. ``course_lib/optim.py``."""
    obj = inspect.unwrap(obj)  # see through decorators such as @torch.no_grad()
    try:
        code = inspect.getsource(obj)
        path = inspect.getsourcefile(obj) or "?"
    except (OSError, TypeError) as err:
        raise TypeError(
            f"obj must be a function, class or method with source, got {obj!r}"
        ) from err
    where = path.replace("\\", "/")
    where = where[where.rfind("course_lib/") :] if "course_lib/" in where else where
    return f"`{where}` — `{obj.__qualname__}`\n\n```python\n{textwrap.dedent(code)}```"


def show_source(obj):
    """Display the source of ``obj`` with syntax highlighting in Jupyter and in the book."""
    from IPython.display import Markdown  # imported here: the library itself needs no IPython

    return Markdown(source_markdown(obj))
