"""``make nbval`` (tools/nbval_run.py): which executed notebooks nbval executes again.

A notebook is executed again unless the very same executed copy already passed with the very
same comparison rules; any change to the copy (new outputs after a library change, new code)
or to the rules (the sanitizer, the Jupyter-behaviour plugin) makes it pending again.
"""

from __future__ import annotations

import sys

import pytest

from tools import nbval_run


@pytest.fixture
def setup(tmp_path):
    notebooks = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.ipynb"
        path.write_text(f'{{"cells": ["{name}"]}}', encoding="utf-8")
        notebooks.append(path)
    rules = (tmp_path / "sanitize.cfg", tmp_path / "plugin.py")
    for rule in rules:
        rule.write_text("rule\n", encoding="utf-8")
    return notebooks, rules, tmp_path / "passed"


def test_every_notebook_is_pending_on_a_fresh_clone(setup):
    notebooks, rules, passed = setup
    assert nbval_run.pending(notebooks, passed, rules) == notebooks


def test_a_passed_notebook_is_not_executed_again_until_it_changes(setup):
    notebooks, rules, passed = setup
    nbval_run.record_passed(notebooks, passed, rules)
    assert nbval_run.pending(notebooks, passed, rules) == []
    notebooks[1].write_text('{"cells": ["b", "new output"]}', encoding="utf-8")
    assert nbval_run.pending(notebooks, passed, rules) == [notebooks[1]]


def test_a_change_to_the_comparison_rules_makes_every_notebook_pending(setup):
    notebooks, rules, passed = setup
    nbval_run.record_passed(notebooks, passed, rules)
    rules[0].write_text("rule\nregex: new\n", encoding="utf-8")
    assert nbval_run.pending(notebooks, passed, rules) == notebooks


def test_the_key_covers_the_real_rules():
    assert {p.name for p in nbval_run.RULES} == {"nbval_sanitize.cfg", "nbval_jupyter.py"}
    assert all(p.is_file() for p in nbval_run.RULES)


def test_bad_jobs_is_refused(capsys):
    with pytest.raises(SystemExit):
        nbval_run.main(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_runs_nbval_strict_two_at_a_time_per_file(monkeypatch, tmp_path):
    """The pytest command it builds: xdist workers, a notebook's cells in one worker."""
    exported = [tmp_path / "x.ipynb", tmp_path / "y.ipynb"]
    for path in exported:
        path.write_text("{}", encoding="utf-8")
    calls = []
    monkeypatch.setattr(nbval_run.notebook_cache, "export_executed", lambda *a: exported)
    monkeypatch.setattr(nbval_run, "PASSED_DIR", tmp_path / "passed")
    monkeypatch.setattr(nbval_run.subprocess, "call", lambda cmd, cwd: calls.append(cmd) or 0)
    assert nbval_run.main(["--jobs", "2", "--", "--nbval", "--nbval-current-env"]) == 0
    (command,) = calls
    assert command[:3] == [sys.executable, "-m", "pytest"]
    assert command[command.index("-n") + 1] == "2" and "loadfile" in command
    assert "--nbval" in command and "--nbval-lax" not in command
    assert command[-2:] == [str(p) for p in exported]
    # passed: a second run executes nothing
    assert nbval_run.main(["--jobs", "2", "--", "--nbval"]) == 0
    assert len(calls) == 1
