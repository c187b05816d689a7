"""A test whose system tool is missing skips on a developer's machine and fails in CI
(``tests/requirements.py``): run as pytest runs it, in a pytest of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devkit import REPO

NEEDS_A_MISSING_TOOL = """
from tests.requirements import require_tool

def test_needs_it():
    require_tool("frobnicator", "apt-get install frobnicator", None)

def test_has_it():
    assert require_tool("sh", "apt-get install dash", "/bin/sh") == "/bin/sh"
"""


def pytest_in(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_tool.py").write_text(NEEDS_A_MISSING_TOOL)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    # Only pytest itself: the installed plugins (xdist, moto's...) add seconds and nothing here.
    env.update(PYTHONPATH=str(REPO), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_tool.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("ci", [None, "false"])
def test_without_ci_a_missing_tool_skips_naming_the_fix(tmp_path: Path, ci: str | None) -> None:
    run = pytest_in(tmp_path, ci)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout
    assert "frobnicator is not installed: apt-get install frobnicator" in run.stdout


def test_in_ci_a_missing_tool_fails_naming_the_fix(tmp_path: Path) -> None:
    run = pytest_in(tmp_path, "true")  # what .ci/run exports
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert "frobnicator is not installed: apt-get install frobnicator" in run.stdout
