"""The tool's word: once a run has seen a login die, nothing says "healthy" over it.

The newcomer's path, through the real CLI as a subprocess against the emulator (and moto's
server for S3): log in, let another login to the same app replace it (Schwab keeps one login
per app), run `refresh`. From then on `status` exits 3 naming `login`, `doctor` fails naming it,
and a `TokenReader`, of the document or of its access view, raises "login required". A later
login makes every one of them work again.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devkit.user import cli_env, login, run_cli
from schwab_tokens import TokenReader
from schwab_tokens.errors import LoginRequired
from schwab_tokens.stores import access_url, store_from_url
from schwab_tokens.token import REFRESH_TOKEN_LIFETIME
from tests.fakes import FakeClock
from tests.helpers import RawBody, make_token, start_watch

T0 = 1_900_000_000


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return str(tmp_path / "tokens.json")
    request.getfixturevalue("aws_endpoint")
    return str(request.getfixturevalue("s3_store_url")())


def replace_login(emulator, tmp_path: Path) -> None:
    """Another tool logs in to the same app (schwab-py's easy_client, a second laptop)."""
    login(store_from_url(str(tmp_path / "elsewhere.json")), emulator)


def test_a_login_replaced_elsewhere_is_said_by_status_doctor_and_readers(
    emulator, store_url: str, tmp_path: Path
) -> None:
    env = cli_env(emulator)
    login(store_from_url(store_url), emulator)
    view_url = store_from_url(store_url).view.url
    replace_login(emulator, tmp_path)

    refreshed = run_cli(["refresh", "--force", "--store", store_url], env)
    assert refreshed.code == 3, refreshed.text
    assert "another login to this app replaced this one" in refreshed.err

    relogin = f"schwab-tokens login --store {store_url}"
    status = run_cli(["status", "--store", store_url], env)
    assert status.code == 3, status.text
    assert relogin in status.out
    assert "healthy:        no" in status.out
    as_json = run_cli(["status", "--json", "--store", store_url], env)
    row = json.loads(as_json.out)
    assert as_json.code == 3
    assert (row["healthy"], row["login_required"], row["login_required_reason"]) == (
        False,
        True,
        "replaced",
    )

    doctor = run_cli(["doctor", "--store", store_url], env)
    assert doctor.code == 3, doctor.text
    failed = [line for line in doctor.out.splitlines() if line.startswith("FAIL  login:")]
    assert failed and relogin in failed[0], doctor.out
    assert "everything is in place" not in doctor.out

    for url in (store_url, view_url):
        with pytest.raises(LoginRequired, match="schwab-tokens login --store") as raised:
            TokenReader(url).access_token()
        assert relogin in str(raised.value)

    # A new login: every one of them works again, a reader made before it included.
    clock = FakeClock(time.time())
    reader = TokenReader(view_url, clock=clock)
    with pytest.raises(LoginRequired):
        reader.access_token()
    new = login(store_from_url(store_url), emulator)
    clock.advance(reader.min_reread)
    assert reader.access_token() == new.access_token
    assert run_cli(["status", "--store", store_url], env).code == 0
    assert run_cli(["doctor", "--store", store_url], env).code == 0


def test_watch_notes_the_dead_login_for_status(emulator, tmp_path: Path) -> None:
    """`watch` runs the same policy: the death it sees is noted where `status` reads it."""
    url = str(tmp_path / "tokens.json")
    env = cli_env(emulator)
    emulator.configure(access_lifetime=300)  # due at once: watch refreshes on its first round
    login(store_from_url(url), emulator)
    replace_login(emulator, tmp_path)
    watch = start_watch(url, env, merge_stderr=True)
    try:
        assert watch.stdout is not None
        for line in watch.stdout:
            if "waiting for a new login" in line:
                break
        else:
            pytest.fail("watch ended without reporting the dead login")
    finally:
        watch.terminate()
        watch.communicate(timeout=30)
    status = run_cli(["status", "--store", url], env)
    assert status.code == 3, status.text
    assert f"schwab-tokens login --store {url}" in status.out


def test_a_login_past_its_seven_days_is_over_for_a_reader_at_once(tmp_path: Path) -> None:
    """The reader's own clock: past the login's 7 days it says "login required", even with an
    access token that has minutes left, and without waiting for a writer."""
    url = str(tmp_path / "tokens.json")
    fresh = make_token("late", now=T0)
    token = replace(fresh, creation_timestamp=T0 - REFRESH_TOKEN_LIFETIME + 60)
    store_from_url(url).write(token, None)
    clock = FakeClock(T0)
    reader = TokenReader(url, clock=clock)
    assert reader.access_token() == token.access_token  # a minute before the end
    clock.advance(61)
    with pytest.raises(LoginRequired, match="7 days after the login"):
        reader.access_token()
    for read in (reader.access_token, reader.token, reader.access_token):  # every read, at once
        with pytest.raises(LoginRequired, match="7 days after the login"):
            read()
    again = make_token("again", now=T0 + 61)
    store = store_from_url(url)
    store.write(again, store.read().version)  # someone logs in again
    clock.advance(reader.min_reread)
    assert reader.access_token() == again.access_token


@pytest.mark.parametrize("kind", ["file", "s3", "secretsmanager"])
def test_a_reader_of_a_view_names_the_document_for_the_login(
    kind: str, tmp_path: Path, moto_aws: None
) -> None:
    """A bot reads the access view; when the login is over, the command it is told to run
    writes the whole document, so it names the document's URL, never the view's."""
    document = {
        "file": str(tmp_path / "tokens.json"),
        "s3": "s3://bot-bucket/schwab/tokens.json",
        "secretsmanager": "secretsmanager://bot/tokens",
    }[kind]
    if kind == "s3":
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bot-bucket")
    store = store_from_url(document)
    token = make_token("viewed", now=T0)
    token = replace(token, creation_timestamp=T0 - REFRESH_TOKEN_LIFETIME - 60)
    store.write(token, None)
    store.sync_view(token, login_required=True)
    view = access_url(document)
    with pytest.raises(LoginRequired) as refused:
        TokenReader(view, clock=FakeClock(T0)).access_token()
    message = str(refused.value)
    fix = message.split("`schwab-tokens login ", 1)[1]
    assert fix.startswith(f"--store {document.split(' ')[0]}"), message
    assert view not in fix, message


def test_notes_that_cannot_be_read_now_never_make_a_dead_login_healthy(moto_aws: None) -> None:
    """The notes say the login is over; S3 throttles their read (503 SlowDown, past botocore's
    retries). status has no word on the login then: it says "try again" (exit 4), never
    "healthy"."""
    import boto3
    from botocore.awsrequest import AWSResponse

    from schwab_tokens import aws
    from schwab_tokens.errors import Outcome, TemporaryFailure
    from schwab_tokens.health import describe
    from schwab_tokens.notes import record_verdict

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="slow-bucket")
    store = store_from_url("s3://slow-bucket/tokens.json")
    token = make_token("noted", now=time.time())
    store.write(token, None)
    record_verdict(store, token, Outcome.REAUTH_REQUIRED)
    assert describe(store)["login_required"] is True

    def slow_down(request: Any, **_: Any) -> AWSResponse | None:
        if not request.url.split("?")[0].endswith("/tokens.json.notes"):
            return None
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
        return AWSResponse(request.url, 503, {}, RawBody(body))

    events = aws.client("s3").meta.events
    events.register_first("before-send.s3.GetObject", slow_down)
    try:
        with pytest.raises(TemporaryFailure):
            describe(store)
    finally:
        events.unregister("before-send.s3.GetObject", slow_down)
