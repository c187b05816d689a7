"""Headless Chromium, as a person's browser: open a URL, follow every redirect, read the page.

Debian's ``chromium`` (``scripts/install-system-packages.sh`` installs it). Certificates made on
the spot (the CLI's listener, the local Function URL) are accepted with
``--ignore-certificate-errors``; a profile folder keeps the cookies between two visits.

A test marked ``needs_chromium`` skips without Chromium, and fails under CI
(``tests/requirements.py``). This module is a pytest plugin (``tests/conftest.py``) for the
``chromium`` fixture behind that mark.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.requirements import INSTALL_SCRIPT, require_tool

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Each browser step takes about two seconds here; this bounds a hung browser.
BROWSER_TIMEOUT = 45.0


@pytest.fixture
def chromium() -> str:
    """The path of headless Chromium (skips without it, fails under CI)."""
    return require_tool(
        f"headless Chromium ({CHROMIUM})",
        f"{INSTALL_SCRIPT}, or set CHROMIUM=/path/to/chromium",
        CHROMIUM if os.access(CHROMIUM, os.X_OK) else None,
    )


#: Before the test's own fixtures start anything: the browser is there, or the test stops.
needs_chromium = pytest.mark.usefixtures("chromium")


def browse(url: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Open ``url`` in headless Chromium, follow redirects, print the final page's DOM."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--ignore-certificate-errors",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        env={**os.environ, "HOME": str(profile)},
    )
