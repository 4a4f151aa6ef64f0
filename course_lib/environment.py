"""What this machine can do: versions, hardware and optional features, checked by running them
(chapter 6, "Tools and resources"). Nothing here downloads anything."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import NamedTuple

import torch
from torch import nn

from course_lib import _checks
from course_lib.device import available_devices

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "matplotlib",
    "pandas",
    "tqdm",
    "mnist1d",
    "statsmodels",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "optuna",
    "torchao",
    "jupyter-book",
    "myst-nb",
    "nbval",
    "pytest",
    "ruff",
)


class FeatureCheck(NamedTuple):
    """One optional feature: does it work here, and what was observed."""

    feature: str
    works: bool
    detail: str


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution in ``packages`` (``"not installed"`` if absent),
    plus Python's own version."""
    _checks.instance("packages", packages, (tuple, list), "a tuple or list of distribution names")
    for name in packages:
        if not isinstance(name, str) or not name:
            raise TypeError(f"packages must hold only non-empty str names, got {name!r}")
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def hardware() -> dict[str, str]:
    """CPU cores, PyTorch's intra-op threads, the CPU's vector extension and the devices here."""
    info = {
        "platform": platform.platform(terse=True),
        "cpu cores (os.cpu_count)": str(os.cpu_count()),
        "torch intra-op threads": str(torch.get_num_threads()),
        "cpu vector capability": torch.backends.cpu.get_cpu_capability(),
        "devices": ", ".join(available_devices()),
    }
    if torch.cuda.is_available():
        info["cuda devices"] = ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
    return info


def _check(feature: str, fn) -> FeatureCheck:
    try:
        return FeatureCheck(feature, True, fn())
    except Exception as err:  # a feature check reports failure, it does not crash the report
        return FeatureCheck(feature, False, f"{type(err).__name__}: {err}"[:200])


def _bf16_autocast() -> str:
    x, layer = torch.randn(8, 16), nn.Linear(16, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    if out.dtype != torch.bfloat16:
        raise RuntimeError(f"autocast produced {out.dtype}")
    return "Linear runs in bfloat16 under torch.autocast('cpu')"


def _int8_dynamic() -> str:
    from course_lib.compress import quantize_dynamic_int8

    model = nn.Sequential(nn.Linear(16, 16))
    quantized = quantize_dynamic_int8(model)
    quantized(torch.randn(2, 16))
    engine = torch.backends.quantized.engine
    return f"dynamic int8 Linear runs (engine {engine})"


def _torch_compile(timeout: float) -> str:
    code = (
        "import torch; f = torch.compile(torch.nn.Linear(8, 8)); x = torch.randn(4, 8);"
        "assert torch.allclose(f(x), f._orig_mod(x), atol=1e-6); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0 or "ok" not in result.stdout:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "failed")
    return "inductor compiled a Linear and matched eager mode"


def _gpu() -> str:
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    return torch.cuda.get_device_name(0)


def _mps() -> str:
    if not torch.backends.mps.is_available():
        raise RuntimeError("no Apple GPU (MPS)")
    return "MPS available"


def _distributed(backend: str) -> str:
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("torch.distributed is not built into this PyTorch")
    available = {"gloo": dist.is_gloo_available, "nccl": dist.is_nccl_available}[backend]()
    if not available:
        raise RuntimeError(f"backend {backend} not built in")
    if backend == "nccl" and not torch.cuda.is_available():
        raise RuntimeError("nccl is built in but needs a CUDA device")
    return f"{backend} backend available"


def feature_checks(
    check_compile: bool = True, compile_timeout: float = 180.0
) -> list[FeatureCheck]:
    """Run each optional feature for real and report whether it works here.

    ``torch.compile`` is tried in a subprocess with a timeout (it needs a C++ compiler on CPU and
    can take tens of seconds the first time); pass ``check_compile=False`` to skip it.
    """
    _checks.flag("check_compile", check_compile)
    compile_timeout = _checks.positive("compile_timeout", compile_timeout)
    checks = [
        _check("CUDA GPU", _gpu),
        _check("Apple GPU (MPS)", _mps),
        _check("bfloat16 autocast on CPU", _bf16_autocast),
        _check("int8 dynamic quantization (CPU)", _int8_dynamic),
        _check("torch.distributed: gloo (CPU)", lambda: _distributed("gloo")),
        _check("torch.distributed: nccl (GPU)", lambda: _distributed("nccl")),
    ]
    if check_compile:
        checks.append(_check("torch.compile (inductor)", lambda: _torch_compile(compile_timeout)))
    return checks
