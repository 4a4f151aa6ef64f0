"""Reproducibility: one call seeds every random number generator a chapter uses (chapter 1)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from course_lib import _checks


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``.

    Same seed, same numbers: every notebook calls this first so that the figures the prose
    quotes are reproducible. Returns nothing, so a notebook cell ending with it shows no output.

    Raises ``TypeError`` if ``seed`` is not an ``int`` and ``ValueError`` if it is outside
    ``[0, 2**32 - 1]`` (NumPy's range).
    """
    seed = _checks.seed("seed", seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
