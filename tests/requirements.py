"""Tests that need a program the project cannot pip-install (headless Chromium, libfaketime,
systemd-analyze, the SAM CLI of `make tools`): without it a test skips on a developer's
machine, and fails in CI, where a skip would hide that the test never ran.

CI is the environment variable ``CI`` (``.ci/run`` exports ``CI=true``; GitHub Actions, GitLab
and most other CI services set it too).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The script that installs the system packages these tests need (Debian's apt-get).
INSTALL_SCRIPT = "run scripts/install-system-packages.sh"


def in_ci() -> bool:
    """Whether this is a CI run: ``CI`` is set to anything but empty, ``0`` or ``false``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tool(name: str, how: str, found: str | Path | None) -> str:
    """``found`` (the tool's path, as the caller looked it up) as a string.

    Raises (through pytest) when ``found`` is None: a skip naming ``how`` to install ``name``,
    or under CI (``in_ci``) a failure, so that a CI run never passes without the test.
    """
    if found is not None:
        return str(found)
    missing = f"{name} is not installed: {how}"
    if in_ci():
        pytest.fail(
            f"{missing} (CI is set: a missing tool fails instead of skipping)", pytrace=False
        )
    pytest.skip(f"{missing} (under CI this test fails instead of skipping)")
