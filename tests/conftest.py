"""Shared fixtures. Tests marked ``book`` check the built HTML and run after ``make book``."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "book: checks of the built book (run after `make book`)")
    config.addinivalue_line("markers", "slow: tests that take more than a few seconds")
    config.addinivalue_line(
        "markers", "browser: the built book in headless Chromium (`make browser`)"
    )


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
