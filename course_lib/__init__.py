"""course_lib: the small, tested library behind *Optimizing Deep Learning Models*.

One module per idea; the module map (``train``, ``experiment``, ``optim``, ``curvature``,
``prune``, ``distill``, ``data``, ``scaling``, ``sparse``, ``online``, ``augment``, ``mixing``,
``compress``, ``timing``, ``parallel``, ``models``, ``transformer``, ``lora``, ``text``,
``cases``, ``plot``, ...) is in ``CONTRIBUTING.md``. The helpers every chapter needs first are
re-exported here.
"""

from course_lib.device import select_device
from course_lib.seed import seed_everything

__version__ = "0.1.0"

__all__ = ["__version__", "seed_everything", "select_device"]
