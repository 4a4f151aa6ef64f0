"""Device selection: the same code runs on a GPU, an Apple GPU or the CPU (chapters 1 and 3.4)."""

from __future__ import annotations

import os

import torch

from course_lib import _checks

_KNOWN = ("cuda", "mps", "cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the device types usable here, in order of preference (``cpu`` is always last)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def select_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return the best available device: ``cuda`` → ``mps`` → ``cpu``.

    ``prefer`` overrides the choice (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a
    ``torch.device``); so does the environment variable ``COURSE_DEVICE`` when ``prefer`` is
    ``None``. Asking for a device that is not available raises ``ValueError`` rather than
    silently running somewhere else.
    """
    if prefer is None:
        prefer = os.environ.get("COURSE_DEVICE") or None
    if prefer is None:
        return torch.device(available_devices()[0])
    _checks.instance("prefer", prefer, (str, torch.device), "a str, torch.device or None")
    try:
        device = torch.device(prefer)
    except RuntimeError as err:
        raise ValueError(f"prefer must name a device in {_KNOWN}, got {prefer!r}") from err
    if device.type not in _KNOWN:
        raise ValueError(f"prefer must name a device in {_KNOWN}, got {prefer!r}")
    if device.type not in available_devices():
        raise ValueError(
            f"prefer={prefer!r} asks for a device that is not available here; "
            f"available: {available_devices()}"
        )
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise ValueError(
                f"prefer={prefer!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return device
