"""The one place for argument checks (internal; in the spirit of scikit-learn's parameter
validation).

Every public function of ``course_lib`` validates its arguments at the boundary with these
helpers, so that a bad argument fails at once with a message of one form,
``<name> must be <what is allowed>, got <what was passed>``, instead of deep inside PyTorch.
Each helper returns the value (converted where that is the point, e.g. ``real`` → ``float``).

``bool`` is a subclass of ``int`` in Python; none of the number checks accept it (``True``
epochs or a learning rate of ``False`` is always a mistake).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn


def _type_name(value: Any) -> str:
    return type(value).__name__


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    """``[0, 1)``, ``> 0``, ``>= 1``, ``<= 8`` or ``''`` for no bound."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _inside(value, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and not (value > low if low_open else value >= low):
        return False
    if high is not None and not (value < high if high_open else value <= high):
        return False
    return True


def integer(
    name: str,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    allow_none: bool = False,
) -> int | None:
    """An ``int`` (not a ``bool``) in ``[low, high]``; ``None`` too with ``allow_none``."""
    if value is None and allow_none:
        return None
    bounds = _interval(low, high, False, False)
    allowed = f"an int {bounds}".rstrip() + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {_type_name(value)}")
    if not _inside(value, low, high, False, False):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """An ``int >= 1`` (epochs, batch sizes, counts)."""
    return integer(name, value, 1, allow_none=allow_none)


def real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number (``int`` or ``float``, not ``bool``) in the interval given by
    ``low``/``high`` (closed unless ``low_open``/``high_open``); returned as ``float``."""
    if value is None and allow_none:
        return None
    bounds = _interval(low, high, low_open, high_open)
    allowed = f"a number {bounds}".rstrip() + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed}, got {_type_name(value)}")
    value = float(value)
    if not math.isfinite(value):
        allowed = allowed.replace("a number", "a finite number", 1)
        raise ValueError(f"{name} must be {allowed}, got {value}")
    if not _inside(value, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def positive(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """A finite number ``> 0`` (learning rates, temperatures, scales)."""
    return real(name, value, 0, low_open=True, allow_none=allow_none)


def fraction(name: str, value: Any, *, closed: bool = False) -> float:
    """A number in ``(0, 1)`` (split sizes), or ``[0, 1]`` with ``closed=True`` (amounts)."""
    return real(name, value, 0, 1, low_open=not closed, high_open=not closed)


def flag(name: str, value: Any) -> bool:
    """A ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_type_name(value)}")
    return value


def one_of(name: str, value: Any, choices: Iterable) -> Any:
    """One of ``choices`` (compared with ``==``)."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices!r}, got {value!r}")
    return value


def instance(name: str, value: Any, types: type | tuple[type, ...], allowed: str | None = None,
             *, allow_none: bool = False) -> Any:  # fmt: skip
    """An instance of ``types``; ``allowed`` words the message (default: the type names)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, types):
        if allowed is None:
            names = types if isinstance(types, tuple) else (types,)
            allowed = "a " + " or ".join(t.__name__ for t in names)
        suffix = " or None" if allow_none else ""
        raise TypeError(f"{name} must be {allowed}{suffix}, got {_type_name(value)}")
    return value


def module(name: str, value: Any) -> nn.Module:
    """A ``torch.nn.Module``."""
    return instance(name, value, nn.Module, "a torch.nn.Module")


def optimizer(name: str, value: Any, *, allow_none: bool = False) -> torch.optim.Optimizer | None:
    """A ``torch.optim.Optimizer``."""
    return instance(name, value, torch.optim.Optimizer, "a torch.optim.Optimizer",
                    allow_none=allow_none)  # fmt: skip


def function(name: str, value: Any, signature: str = "", *, allow_none: bool = False):
    """A callable; ``signature`` (e.g. ``"loss_fn(outputs, targets) -> tensor"``) is shown."""
    if value is None and allow_none:
        return None
    if not callable(value):
        what = "callable" + (f": {signature}" if signature else "")
        suffix = "None or " if allow_none else ""
        raise TypeError(f"{name} must be {suffix}{what}, got {_type_name(value)}")
    return value


def batches(name: str, value: Any, *, allow_none: bool = False) -> Iterable | None:
    """An iterable of ``(inputs, targets)`` batches (a ``DataLoader`` or a list)."""
    if value is None and allow_none:
        return None
    if not hasattr(value, "__iter__"):
        suffix = " or None" if allow_none else ""
        raise TypeError(
            f"{name} must be an iterable of (inputs, targets) batches{suffix}, "
            f"got {_type_name(value)}"
        )
    return value


def tensor(
    name: str,
    value: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    floating: bool = False,
    nonempty: bool = False,
) -> torch.Tensor:
    """A ``torch.Tensor``, optionally of ``ndim`` dimensions (one or several allowed), of a
    floating-point dtype, with at least one element."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_type_name(value)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            words = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be a {words} tensor, got shape {tuple(value.shape)}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must hold at least one element, got shape {tuple(value.shape)}")
    return value


def ints(name: str, value: Any, low: int | None = 1, *, nonempty: bool = True) -> tuple[int, ...]:
    """A sequence (not a string) of ints, each ``>= low``; returned as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of ints, got {_type_name(value)}")
    value = tuple(value)
    if nonempty and not value:
        raise ValueError(f"{name} must hold at least one int, got none")
    for item in value:
        integer(f"{name} (each entry)", item, low)
    return value


def callable_or_none(name: str, value: Any, signature: str = "") -> Callable | None:
    """``None`` or a callable (hooks such as ``after_step``)."""
    return function(name, value, signature, allow_none=True)


def seed(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """A random seed: an ``int`` in ``[0, 2**32 - 1]`` (the range NumPy accepts)."""
    if value is None and allow_none:
        return None
    allowed = "an int in [0, 2**32 - 1]" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {_type_name(value)}")
    if not 0 <= value < 2**32:
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def pair(name: str, value: Any, low: float | None = None, high: float | None = None,
         *, strict: bool = False) -> tuple[float, float]:  # fmt: skip
    """Two finite numbers ``(a, b)`` (a tuple or list) with ``low <= a <= b <= high``
    (``a < b`` with ``strict``; a missing bound is not checked); returned as floats."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a pair (a, b) of numbers, got {_type_name(value)}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (a, b) of numbers, got {tuple(value)!r}")
    a, b = real(f"{name}[0]", value[0]), real(f"{name}[1]", value[1])
    rule = ("<" if strict else "<=").join(("a ", " b"))
    rule = (f"{low} <= " if low is not None else "") + rule
    rule += f" <= {high}" if high is not None else ""
    too_low, too_high = low is not None and a < low, high is not None and b > high
    if (a >= b if strict else a > b) or too_low or too_high:
        raise ValueError(f"{name} must be a pair (a, b) with {rule}, got {(a, b)}")
    return a, b
