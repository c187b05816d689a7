from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.emulator import Emulator

pytest_plugins = ["tests.conftest_aws", "tests.secret_hygiene"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(callback_url=f"https://127.0.0.1:{free_port()}").start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No test sees the developer's Schwab or AWS settings, and none writes outside tmp_path."""
    import os

    for name in list(os.environ):
        if name.startswith(("SCHWAB_", "TOKEN_STORE", "AWS_", "REFRESH_MARGIN")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["file", "s3", "secretsmanager"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A store of each kind: a file, or S3 / Secrets Manager on moto's server over HTTP."""
    if request.param == "file":
        return str(tmp_path / "tokens.json")
    request.getfixturevalue("aws_endpoint")
    if request.param == "s3":
        return str(request.getfixturevalue("s3_store_url")())
    return str(request.getfixturevalue("sm_store_url")())
