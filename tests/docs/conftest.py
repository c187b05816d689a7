"""Fixtures of the docs tests: what a documented consumer snippet runs against."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devkit.background import free_port
from devkit.emulator import Emulator
from devkit.user import login
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The emulator, with an app key and secret of the shape Schwab's have (32 and 16
    characters): Schwabdev refuses any other shape before it reads a token."""
    emu = Emulator(
        app_key="emu-docs-app-key-000000000000001",
        app_secret="emu-docs-secret1",
        callback_url=f"https://127.0.0.1:{free_port()}",
    ).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def consumer_env(
    emulator: Emulator, aws_endpoint: str, s3_store_url: Callable[..., str]
) -> dict[str, str]:
    """A token logged in to an S3 store on moto's server, and the environment a consumer has:
    the store's access view, the store, the app's key and secret, and Schwab's base URL."""
    url = s3_store_url()
    store = store_from_url(url, Settings())
    login(store, emulator)
    return {
        "TOKEN_ACCESS_URL": store.view.url,
        "TOKEN_STORE_URL": url,
        "SCHWAB_APP_KEY": emulator.app_key,
        "SCHWAB_APP_SECRET": emulator.app_secret,
        "SCHWAB_API_BASE": emulator.base_url,
    }
