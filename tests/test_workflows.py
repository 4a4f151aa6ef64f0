"""The GitHub Actions workflows (they cannot run here): check what they would do."""

from __future__ import annotations

import yaml
from notebook_rules import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on:` as True
    return workflow


def steps(job: dict) -> str:
    return "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in job["steps"])


def test_pull_requests_run_make_test():
    workflow = load("test.yml")
    assert "pull_request" in workflow["on"]
    (job,) = workflow["jobs"].values()
    text = steps(job)
    assert "actions/checkout" in text and "bash .ci/run" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_main_builds_the_book_and_publishes_it_to_pages():
    workflow = load("book.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert "make book" in steps(build)
    upload = next(s for s in build["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and "deploy-pages" in steps(deploy)
    assert deploy["environment"]["name"] == "github-pages"
