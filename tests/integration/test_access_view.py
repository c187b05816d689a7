"""The access view: every writer keeps it beside the token, consumers read it with the client
library they already use, and it never holds what only the refresher needs.

Each store kind is real: a file, S3 and Secrets Manager (whose view is an SSM parameter) on
moto's server over HTTP; Schwab is the emulator; the clients are the real schwab-py and
Schwabdev 4. Every document a writer leaves is checked against the JSON Schemas in schemas/.
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schwab
import schwabdev
from authlib.integrations.base_client.errors import InvalidTokenError

from devkit.emulator import Emulator
from devkit.emulator.schwabpy import point_client_at_emulator
from devkit.user import cli_env, login, paste_login, run_cli
from schwab_tokens.access import AccessView
from schwab_tokens.errors import LoginRequired
from schwab_tokens.exports import SchwabdevTokens
from schwab_tokens.lambdas.refresher import handle
from schwab_tokens.reader import TokenReader
from schwab_tokens.settings import Settings
from schwab_tokens.stores import access_url, source_from_url, store_from_url
from tests.fakes import AheadClock
from tests.helpers import emulator_settings, lambda_event, start_watch, valid, view_of, wait_for


def test_the_views_location_derives_from_the_store_url(aws_endpoint: str) -> None:
    assert access_url("tokens.json") == "tokens.access.json"
    assert access_url("file:~/bots/tokens.json") == "file:~/bots/tokens.access.json"
    assert access_url("/var/lib/schwab/token") == "/var/lib/schwab/token.access.json"
    assert access_url("s3://my-bucket/schwab/tokens.json") == (
        "s3://my-bucket/schwab/tokens.access.json"
    )
    assert access_url("secretsmanager://stack/tokens") == "ssm:/stack/tokens.access"
    assert access_url("secretsmanager://a+b=c@d") == "ssm:/a_b_c_d.access"


def test_every_writer_keeps_the_view_and_the_schemas_hold(
    emulator: Emulator, store_url: str
) -> None:
    env = cli_env(emulator)
    # The CLI login.
    run = paste_login(["--store", store_url, "--callback-url", emulator.callback_url], env)
    assert run.code == 0, run.err
    first = view_of(store_url)
    # A refresh (the CLI's; the refresher runs the same policy).
    assert run_cli(["refresh", "--force", "--store", store_url], env).code == 0
    second = view_of(store_url)
    assert second["expires_at"] >= first["expires_at"]
    assert second["fingerprint"] != first["fingerprint"]
    # The refresher Lambda's handler, with the stack's forced event.
    emulator.configure(access_lifetime=600)  # the token it stores is due for watch, below
    forced = handle(lambda_event("force_refresh.json"), emulator_settings(emulator, store_url))
    assert forced["outcome"] == "refreshed", forced
    assert view_of(store_url)["fingerprint"] not in (first["fingerprint"], second["fingerprint"])
    # watch, finding it due under its 900 s margin.
    emulator.configure(access_lifetime=1800)
    watching = start_watch(store_url, env)
    view = store_from_url(store_url, Settings()).view
    try:
        # The view follows the token's write (the two are never read at one instant here).
        wait_for(
            lambda: json.loads(view.read_raw().raw)["expires_at"] >= time.time() + 1000,
            what="watch's refresh",
        )
    finally:
        watching.send_signal(signal.SIGTERM)
        watching.communicate(timeout=10)
    assert watching.returncode == 0
    view_of(store_url)
    # schwab-py refreshing through the whole document's hooks (a bot under the lease).
    reader = TokenReader(store_url)
    read, write = reader.access_functions()
    document = read()
    document["token"] = {
        **document["token"],
        "access_token": "A" * 40,
        "expires_at": int(time.time()) + 1800,
    }
    write(document, refresh_token=document["token"]["refresh_token"])
    assert view_of(store_url)["access_token"] == "A" * 40
    # The export of each format.
    exported = run_cli(["export", "--format", "access", "--store", store_url], env)
    assert exported.code == 0 and valid("access-view", exported.out)["access_token"] == "A" * 40
    exported = run_cli(["export", "--format", "schwab-py", "--store", store_url], env)
    assert exported.code == 0
    assert "refresh_token" not in json.loads(exported.out)["token"]  # an export holds none


def test_a_missing_view_is_repaired_by_the_next_run(emulator: Emulator, store_url: str) -> None:
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    before = store.read_raw()
    _delete_view(store_url)
    with pytest.raises(LoginRequired, match="no access view"):
        TokenReader(store.view.url).access_token()
    run = run_cli(["refresh", "--json", "--store", store_url], cli_env(emulator))
    assert run.code == 0 and json.loads(run.out)["access_view"] == "written"
    assert store.read_raw() == before  # the token itself was fresh: not refreshed
    view_of(store_url)
    run = run_cli(["refresh", "--json", "--store", store_url], cli_env(emulator))
    assert json.loads(run.out)["access_view"] == "current"


def test_status_json_names_the_view(emulator: Emulator, store_url: str) -> None:
    login(store_from_url(store_url, Settings()), emulator)
    status = json.loads(run_cli(["status", "--json", "--store", store_url], cli_env(emulator)).out)
    assert status["access_url"] == access_url(store_url)
    missing = json.loads(
        run_cli(["status", "--json", "--store", store_url + "-none"], cli_env(emulator)).out
    )
    assert missing["access_url"] == access_url(store_url + "-none")


# -- readers ---------------------------------------------------------------------------------------
def test_from_env_prefers_the_view_and_keeps_the_warm_path(
    emulator: Emulator, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_from_url(store_url, Settings())
    token = login(store, emulator)
    monkeypatch.setenv("TOKEN_STORE_URL", store_url)
    monkeypatch.setenv("TOKEN_ACCESS_URL", access_url(store_url))
    reader = TokenReader.from_env()
    assert reader.store.url == access_url(store_url)
    reads = _count_reads(reader)
    assert all(reader.access_token() == token.access_token for _ in range(1000))
    assert reads() == 1  # one read, then memory
    held = reader.token()
    assert isinstance(held, AccessView) and held.fingerprint == token.fingerprint
    assert "refresh_token" not in reader.document()["token"]


def test_schwab_py_on_the_view_never_calls_the_token_endpoint(
    emulator: Emulator, store_url: str
) -> None:
    """A schwab-py client built once on the view makes real API calls; when its access token
    comes within schwab-py's 300 s leeway it takes the newer one the refresher put in the
    view; it never refreshes, and when the view itself runs out it raises authlib's
    ``InvalidTokenError`` instead of trying a refresh it cannot do."""
    emulator.configure(access_lifetime=330)  # 30 s before schwab-py's leeway begins
    store = store_from_url(store_url, Settings())
    login(store, emulator)
    # Re-read the view when less than 329 s are left: a second after each write.
    clock = AheadClock()  # ages the reader's view of time, and the client's leeway
    reader = TokenReader(store.view.url, reread_margin=329, min_reread=0.1, clock=clock)
    client = schwab.auth.client_from_access_functions(
        emulator.app_key, emulator.app_secret, *reader.access_functions()
    )
    point_client_at_emulator(client, emulator.base_url)
    emulator.reset_counters()
    assert client.get_account_numbers().status_code == 200
    first = client.session.token["access_token"]

    env = cli_env(emulator)
    assert run_cli(["refresh", "--force", "--store", store_url], env).code == 0  # the refresher
    clock.advance(1.2)
    assert client.get_account_numbers().status_code == 200
    taken = client.session.token["access_token"]
    assert taken != first and taken == store.read().token.access_token  # the newer one, in use
    assert emulator.calls_by_grant == {"refresh_token": 1}  # the refresher's; none from schwab-py

    # The refresher renews with a token that is already inside the leeway, then stops.
    emulator.configure(access_lifetime=200)
    assert run_cli(["refresh", "--force", "--store", store_url], env).code == 0
    clock.advance(1.2)
    with pytest.raises(InvalidTokenError):
        client.get_account_numbers()
    assert emulator.calls_by_grant == {"refresh_token": 2}  # still none from schwab-py


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_schwab_py_on_the_document_follows_watch_instead_of_refreshing(
    emulator: Emulator, store_url: str
) -> None:
    """The single-machine recipe: a bot's schwab-py client on the token file, `watch` (here one
    `refresh`) keeping it fresh. The client takes each newer token from the file instead of
    refreshing by itself, so only the one holding the lease ever calls the token endpoint."""
    emulator.configure(access_lifetime=330)  # 30 s before schwab-py's leeway begins
    login(store_from_url(store_url, Settings()), emulator)
    clock = AheadClock()
    reader = TokenReader(store_url, reread_margin=329, min_reread=0.1, clock=clock)
    client = schwab.auth.client_from_access_functions(
        emulator.app_key, emulator.app_secret, *reader.access_functions()
    )
    point_client_at_emulator(client, emulator.base_url)
    emulator.reset_counters()
    assert client.get_account_numbers().status_code == 200
    assert run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator)).code == 0
    emulator.configure(access_lifetime=200)  # and the next one would be inside the leeway
    clock.advance(1.2)
    assert client.get_account_numbers().status_code == 200
    assert (
        client.session.token["access_token"] == store_from_url(store_url).read().token.access_token
    )
    assert emulator.calls_by_grant == {"refresh_token": 1}  # watch's; none from the bot


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_schwabdev_reads_the_exported_database_without_a_token_call(
    emulator: Emulator, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`schwab-tokens export --format schwabdev`: a real Schwabdev 4 client on it makes API
    calls and never posts to the token endpoint (which would leave this machine: refused)."""
    posts = _forbid_schwabdev_token_calls(monkeypatch)
    login(store_from_url(store_url, Settings()), emulator)
    database = tmp_path / "schwabdev" / "tokens.db"
    run = run_cli(
        ["export", "--format", "schwabdev", "--output", str(database), "--store", store_url],
        cli_env(emulator),
    )
    assert run.code == 0, run.err
    with sqlite3.connect(database) as db:
        (row,) = db.execute("SELECT * FROM schwabdev").fetchall()
    assert row[3] == ""  # no refresh token leaves through an export
    assert row[0].endswith("+00:00") and row[1].endswith("+00:00")  # ISO-8601 issue times
    assert database.stat().st_mode & 0o777 == 0o600
    client = _schwabdev_client(
        emulator, database, SchwabdevTokens(TokenReader(store_url), database)
    )
    assert client.linked_accounts().status_code == 200
    assert posts == []


def test_schwabdev_in_a_warm_lambda_follows_the_view(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Python side of the export: one Schwabdev client per warm container, its row kept
    current from the reader. When its own token nears its 30 minutes, Schwabdev re-reads the
    row and takes the newer token instead of refreshing; where it would prompt for a login,
    ours raises, naming the fix, and nothing blocks."""
    posts = _forbid_schwabdev_token_calls(monkeypatch)
    store = store_from_url(str(tmp_path / "tokens.json"), Settings())
    login(store, emulator)
    reader = TokenReader(store.view.url, min_reread=0)
    tokens = SchwabdevTokens(reader, tmp_path / "schwabdev.db")
    assert tokens.sync() and not tokens.sync()  # a second invocation: nothing changed
    client = _schwabdev_client(emulator, tokens.path, tokens)
    assert client.linked_accounts().status_code == 200

    # The refresher renews the token (in a later second: Schwabdev orders tokens by their
    # issue time, whole seconds); the next invocation's sync writes it into the row.
    issued = store.read().token.issued_at
    wait_for(lambda: time.time() >= issued + 1, what="the next second")
    assert run_cli(["refresh", "--force", "--store", store.url], cli_env(emulator)).code == 0
    reader.invalidate()
    assert tokens.sync()
    # 29.5 minutes later, by Schwabdev's clock: its first token is 30 s from its end.
    later = schwabdev.tokens._now() + timedelta(minutes=29.5)
    monkeypatch.setattr(schwabdev.tokens, "_now", lambda: later)
    assert client.linked_accounts().status_code == 200
    assert client.tokens.access_token == store.read().token.access_token  # taken from the row
    assert posts == []

    # An hour before the login's end Schwabdev would ask for a new login: ours says what to do.
    with pytest.raises(LoginRequired, match="schwab-tokens login"):
        tokens.call_on_auth("https://api.schwabapi.com/v1/oauth/authorize?client_id=x")
    week = later + timedelta(days=6, hours=23, minutes=30)
    monkeypatch.setattr(schwabdev.tokens, "_now", lambda: week)

    def prompt(*_: object) -> str:  # pytest.fail is no Exception: Schwabdev cannot swallow it
        pytest.fail("Schwabdev prompted for a login on standard input")

    monkeypatch.setattr("builtins.input", prompt)
    with caplog.at_level(logging.ERROR):
        client.linked_accounts()  # its call fails or not, but it never waits on a prompt
    # Schwabdev logs what our call_on_auth raised: the fix, for whoever reads the bot's log.
    assert "Could not update refresh token" in caplog.text, caplog.text
    assert "log in again with `schwab-tokens login`" in caplog.text, caplog.text
    assert posts == []


# -- helpers ---------------------------------------------------------------------------------------
def _delete_view(url: str) -> None:
    from schwab_tokens import aws

    view = store_from_url(url, Settings()).view
    if url.startswith("s3://"):
        aws.client("s3").delete_object(Bucket=view.store.bucket, Key=view.key)  # type: ignore[attr-defined]
    elif url.startswith("secretsmanager://"):
        aws.client("ssm").delete_parameter(Name=view.name)  # type: ignore[attr-defined]
    else:
        view.path.unlink()  # type: ignore[attr-defined]


def _count_reads(reader: TokenReader) -> Any:
    source = reader.store
    original = source.read_raw
    calls = []

    def counting() -> Any:
        calls.append(1)
        return original()

    source.read_raw = counting  # type: ignore[method-assign]
    return lambda: len(calls)


def _forbid_schwabdev_token_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    posts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        posts.append((args, kwargs))
        raise AssertionError("Schwabdev called the token endpoint")

    monkeypatch.setattr(schwabdev.tokens.requests, "post", refuse)
    return posts


def _schwabdev_client(emulator: Emulator, database: Path | str, tokens: SchwabdevTokens) -> Any:
    client = schwabdev.Client(
        emulator.app_key,
        "placeholder-0000",  # Schwabdev checks its shape; it never uses it from a view
        tokens_db=str(database),
        call_on_auth=tokens.call_on_auth,
    )
    client._base_api_url = emulator.base_url  # the API routes: the emulator (test only)
    return client


def test_source_from_url_opens_views_through_their_store(aws_endpoint: str) -> None:
    assert source_from_url("tokens.access.json").url == "tokens.access.json"
    assert source_from_url("ssm:/stack/tokens.access").url == "ssm:/stack/tokens.access"
