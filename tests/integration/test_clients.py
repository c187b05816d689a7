"""A client in one line: `reader.schwab_py_client()` and `reader.schwabdev_client()` give the real
schwab-py and Schwabdev 4 clients, which make authenticated API calls on the emulator with the
token the reader holds, take each newer token the refresher stores, and never call Schwab's
token endpoint themselves, from the access view or from the whole document.

Schwab is the emulator (real HTTP on 127.0.0.1); schwab-py's transport is pointed at it
(devkit/emulator/schwabpy.py); Schwabdev posts to Schwab's token endpoint with `requests.post`
of its own module, which is refused here and counted (it would leave this machine).
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import schwabdev
from authlib.integrations.base_client.errors import InvalidTokenError

from devkit.emulator import Emulator
from devkit.emulator.schwabpy import point_client_at_emulator
from devkit.user import login
from schwab_tokens.errors import LoginRequired, TemporaryFailure
from schwab_tokens.lambdas.refresher import handle
from schwab_tokens.reader import TokenReader
from schwab_tokens.settings import Settings
from schwab_tokens.stores import TokenStore, store_from_url
from tests.fakes import AheadClock, token_at
from tests.helpers import emulator_settings, lambda_event, wait_for


@pytest.fixture(autouse=True)
def _temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary folder, where a Schwabdev client's database goes by default, is
    this test's (``tempfile.tempdir`` is the standard library's setting for that)."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def refresh(emulator: Emulator, store: TokenStore) -> str:
    """The refresher's forced run (its Lambda handler); the access token it stored."""
    done = handle(lambda_event("force_refresh.json"), emulator_settings(emulator, store.url))
    assert done["outcome"] == "refreshed", done
    return store.read().token.access_token


# -- schwab-py -------------------------------------------------------------------------------------
@pytest.mark.parametrize("store_url", ["file", "s3"], indirect=True)
def test_schwab_py_client_on_the_view_calls_the_api_and_follows_the_refresher(
    emulator: Emulator, store_url: str
) -> None:
    emulator.configure(access_lifetime=330)  # 30 s before schwab-py's 300 s leeway begins
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    clock = AheadClock()  # ages the reader's token in an instant, and the client's leeway
    reader = TokenReader(store.view.url, reread_margin=329, min_reread=0.1, clock=clock)
    client = reader.schwab_py_client()
    point_client_at_emulator(client, emulator.base_url)
    emulator.reset_counters()

    answer = client.get_account_numbers()
    assert answer.status_code == 200 and answer.json()[0]["hashValue"]
    assert emulator.token_calls == 0

    newer = refresh(emulator, store)
    clock.advance(1.2)
    assert client.get_account_numbers().status_code == 200
    assert client.session.token["access_token"] == newer
    assert emulator.calls_by_grant == {"refresh_token": 1}  # the refresher's alone


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_schwab_py_client_on_the_document_never_refreshes(
    emulator: Emulator, store_url: str
) -> None:
    """A reader of the whole document holds the refresh token, and `access_functions()` would
    let schwab-py use it once the store's token runs into its leeway; the one-line client is
    given the access token alone, so it stops instead."""
    emulator.configure(access_lifetime=330)
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    clock = AheadClock()
    reader = TokenReader(store_url, reread_margin=329, min_reread=0.1, clock=clock)
    client = reader.schwab_py_client()
    point_client_at_emulator(client, emulator.base_url)
    emulator.reset_counters()
    assert client.get_account_numbers().status_code == 200
    assert "refresh_token" not in client.session.token

    emulator.configure(access_lifetime=200)  # the refresher's next token is inside the leeway
    refresh(emulator, store)
    clock.advance(1.2)
    with pytest.raises(InvalidTokenError):
        client.get_account_numbers()
    assert emulator.calls_by_grant == {"refresh_token": 1}  # the refresher's; none from the bot
    assert "refresh_token" not in client.session.token


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_schwab_py_async_client_calls_the_api(emulator: Emulator, store_url: str) -> None:
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    client = TokenReader(store.view.url).schwab_py_client(asyncio=True)
    point_client_at_emulator(client, emulator.base_url)
    emulator.reset_counters()

    async def call() -> int:
        try:
            return (await client.get_account_numbers()).status_code
        finally:
            await client.close_async_session()

    assert asyncio.run(call()) == 200
    assert emulator.token_calls == 0


# -- Schwabdev -------------------------------------------------------------------------------------
@pytest.fixture
def schwabdev_posts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Schwabdev's calls to Schwab's token endpoint: refused and recorded."""
    posts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        posts.append(args[:1])
        raise AssertionError("Schwabdev called the token endpoint")

    monkeypatch.setattr(schwabdev.tokens.requests, "post", refuse)
    return posts


def on_emulator(client: Any, emulator: Emulator) -> Any:
    client._base_api_url = emulator.base_url  # the API routes: the emulator (test only)
    return client


@pytest.mark.parametrize("store_url", ["file", "s3"], indirect=True)
@pytest.mark.parametrize("source", ["view", "document"])
def test_schwabdev_client_calls_the_api_and_follows_the_refresher(
    emulator: Emulator, store_url: str, source: str, schwabdev_posts: list[Any]
) -> None:
    store = store_from_url(store_url, Settings())
    first = login(store, emulator).access_token
    reader = TokenReader(store.view.url if source == "view" else store_url, min_reread=0)
    client = on_emulator(reader.schwabdev_client(), emulator)
    emulator.reset_counters()

    answer = client.linked_accounts()
    assert answer.status_code == 200 and answer.json()[0]["hashValue"]
    assert answer.request.headers["Authorization"] == f"Bearer {first}"
    database = Path(client.tokens._conn.execute("PRAGMA database_list").fetchone()[2])
    assert database.parent.parent == Path(tempfile.gettempdir())
    assert database.parent.stat().st_mode & 0o777 == 0o700
    assert database.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT refresh_token FROM schwabdev").fetchall() == [("",)]

    # The refresher renews (in a later second: Schwabdev keeps issue times in whole seconds).
    wait_for(lambda: time.time() >= store.read().token.issued_at + 1, what="the next second")
    newer = refresh(emulator, store)
    reader.invalidate()
    answer = client.linked_accounts()
    assert answer.status_code == 200
    assert answer.request.headers["Authorization"] == f"Bearer {newer}"
    assert emulator.calls_by_grant == {"refresh_token": 1}  # the refresher's alone
    assert schwabdev_posts == []

    # The private folder goes with the client.
    del client, answer
    gc.collect()
    assert not database.parent.exists()


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_schwabdev_client_stops_when_the_login_is_over(
    emulator: Emulator, store_url: str, tmp_path: Path, schwabdev_posts: list[Any]
) -> None:
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    reader = TokenReader(store.view.url, min_reread=0)
    database = tmp_path / "bot" / "schwabdev.db"
    client = on_emulator(reader.schwabdev_client(tokens_db=database), emulator)
    assert client.linked_accounts().status_code == 200

    emulator.revoke_all()  # another login to the app ended this one
    done = handle(lambda_event("force_refresh.json"), emulator_settings(emulator, store.url))
    assert done["outcome"] == "reauth_required", done
    reader.invalidate()
    with pytest.raises(LoginRequired, match="schwab-tokens login"):
        client.linked_accounts()
    with pytest.raises(LoginRequired, match="schwab-tokens login"):
        reader.schwabdev_client(tokens_db=database)
    assert schwabdev_posts == []
    assert database.exists()  # a path of the user's stays


def test_schwabdev_client_refuses_a_token_it_would_refresh(
    tmp_path: Path, _temporary_folder: Path, schwabdev_posts: list[Any]
) -> None:
    """A stored token a minute from its end means nothing is refreshing it: Schwabdev would try
    to itself, so no client is built on it."""
    path = tmp_path / "tokens.json"
    path.write_bytes(token_at(time.time(), left=60).to_json())
    with pytest.raises(TemporaryFailure, match="is the refresher running"):
        TokenReader(str(path)).schwabdev_client()
    assert schwabdev_posts == []
    assert not list(_temporary_folder.iterdir())  # its private folder is gone with it


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_schwabdev_client_says_when_the_refresher_stopped(
    emulator: Emulator, store_url: str, schwabdev_posts: list[Any]
) -> None:
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    clock = AheadClock()
    client = on_emulator(TokenReader(store.view.url, clock=clock).schwabdev_client(), emulator)
    assert client.linked_accounts().status_code == 200
    clock.advance(1801)  # no refresh came: the stored access token has ended
    with pytest.raises(TemporaryFailure, match="is the refresher running"):
        client.linked_accounts()
    assert schwabdev_posts == []


# -- without the extras ----------------------------------------------------------------------------
MISSING = """
import sys
sys.modules[{module!r}] = None  # as if it were not installed
from schwab_tokens import ConfigurationError, TokenReader
try:
    TokenReader("tokens.json").{method}()
except ConfigurationError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("module", "method", "command"),
    [
        ("schwab", "schwab_py_client", "pip install 'schwab-py>=1.4,<2'"),
        ("schwabdev", "schwabdev_client", "pip install 'schwabdev>=4,<5'"),
    ],
)
def test_a_missing_extra_names_the_pip_command(
    tmp_path: Path, module: str, method: str, command: str
) -> None:
    (tmp_path / "tokens.json").write_bytes(token_at(time.time()).to_json())
    done = subprocess.run(
        [sys.executable, "-c", MISSING.format(module=module, method=method)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert command in done.stdout, done.stdout
    extra = "schwab-py" if module == "schwab" else "schwabdev"
    assert f"pip install '.[{extra}]'" in done.stdout
