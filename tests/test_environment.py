"""The environment report of chapter 6 runs each feature for real."""

from __future__ import annotations

import torch

from course_lib import environment


def test_versions_reports_installed_and_missing_packages():
    found = environment.versions(("torch", "surely-not-a-real-package-xyz"))
    assert found["torch"] == torch.__version__.split("+")[0]
    assert found["surely-not-a-real-package-xyz"] == "not installed"
    assert found["python"].count(".") == 2


def test_hardware_lists_cpu_and_devices():
    info = environment.hardware()
    assert info["devices"].endswith("cpu")
    assert int(info["torch intra-op threads"]) == torch.get_num_threads()


def test_feature_checks_run_and_agree_with_torch():
    checks = {c.feature: c for c in environment.feature_checks(check_compile=False)}
    assert checks["CUDA GPU"].works == torch.cuda.is_available()
    assert checks["bfloat16 autocast on CPU"].works
    assert checks["torch.distributed: gloo (CPU)"].works == torch.distributed.is_gloo_available()
    assert "torch.compile (inductor)" not in checks
    for check in checks.values():
        assert check.detail, f"{check.feature}: a check must say what it observed"


def test_feature_check_failure_is_reported_not_raised():
    failed = environment._check("always fails", lambda: 1 / 0)
    assert failed.works is False and "ZeroDivisionError" in failed.detail
