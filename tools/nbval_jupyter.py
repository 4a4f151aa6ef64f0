"""pytest plugin: nbval executes every cell as Jupyter does (``pytest -p tools.nbval_jupyter``).

nbval 0.11 sends each cell to the kernel with ``store_history=False`` (nbval issue #194).
IPython decides whether a trailing ``;`` hides a cell's value by reading the cell from its
history, so under nbval the ``;`` is ignored: ``plot.plot_curves(...);`` shows its figure a
second time as the cell's result, and strict comparison with the book (executed by nbclient,
which stores history, as Jupyter does) fails. This plugin makes nbval store history too, which
also gives ``_`` and ``Out`` their Jupyter meaning. ``make nbval`` loads it.
"""

from __future__ import annotations

from nbval import kernel


def execute_cell_input(self, cell_input, allow_stdin=None):
    """:meth:`nbval.kernel.RunningKernel.execute_cell_input`, with the history stored."""
    return self.kc.execute(
        cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False
    )


kernel.RunningKernel.execute_cell_input = execute_cell_input
