from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator import Emulator
from tests.helpers import free_port

pytest_plugins = ["tests.conftest_aws", "tests.secret_hygiene"]


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
