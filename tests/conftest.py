from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.background import free_port
from devkit.emulator import Emulator

pytest_plugins = ["tests.conftest_aws", "tests.secret_hygiene", "tests.browser"]


def _share_botocore_data() -> None:
    """One botocore data loader per data path for the whole process.

    botocore reads its service models and endpoint rules from disk for every new session (about
    16 ms a file, a dozen files a test), and the suite starts a session per test
    (``aws.reset_clients``, so no test sees the last one's endpoint or credentials). The files
    are the same for every session; a different ``AWS_DATA_PATH`` still gets its own loader.
    Programs make one session per process, so this changes nothing they do.
    """
    import botocore.session

    make = botocore.session.create_loader
    loaders: dict[str | None, Any] = {}

    def shared(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = make(search_path_string)
        return loaders[search_path_string]

    botocore.session.create_loader = shared  # type: ignore[assignment]


_share_botocore_data()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long runs first (stable order otherwise): with xdist the short tests then fill the gaps
    and the session does not end waiting on one long chunk started last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(callback_url=f"https://127.0.0.1:{free_port()}").start()
    try:
        yield emu
    finally:
        emu.stop()


def _children() -> set[int]:
    """This process's children in its own process group (what a test started; servers meant to
    outlive a test start their own session)."""
    me, group = os.getpid(), os.getpgid(0)
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and int(fields[2]) == group:
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Iterator[None]:
    """A test that fails half-way never leaves its CLI processes running (a `watch` left behind
    refreshes every 0.2 s until the machine stops, slowing every later test)."""
    before = _children()
    yield
    for pid in _children() - before:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's Schwab or AWS settings, and none writes outside tmp_path."""
    prefixes = ("SCHWAB_", "TOKEN_", "AWS_", "REFRESH_MARGIN", "POWERTOOLS_")
    for name in list(os.environ):
        if name.startswith(prefixes):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["file", "s3", "secretsmanager"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store of each kind: a file, or S3 / Secrets Manager on moto's server over HTTP."""
    if request.param == "file":
        return str(tmp_path / "tokens.json")
    request.getfixturevalue("aws_endpoint")
    if request.param == "s3":
        return str(request.getfixturevalue("s3_store_url")())
    return str(request.getfixturevalue("sm_store_url")())
