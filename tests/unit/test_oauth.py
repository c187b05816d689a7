from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devkit.background import free_port
from devkit.emulator import DEFAULT_ACCOUNTS
from devkit.emulator.server import EDGE_400_FAULT_KINDS
from devkit.user import follow_authorize, oauth_for
from schwab_tokens.errors import (
    BadAppCredentials,
    CallbackError,
    InvalidTokenAnswer,
    LoginRequired,
    RefreshTokenRejected,
    TemporaryFailure,
    UsageError,
)
from schwab_tokens.listener import serve_in_background, stop_serving
from schwab_tokens.oauth import SchwabOAuth, parse_callback, shares_accounts
from schwab_tokens.settings import Settings
from schwab_tokens.token import Token


def logged_in(emulator, **options) -> tuple[SchwabOAuth, dict]:
    """The client and the answer to a completed login's code exchange."""
    oauth = oauth_for(emulator, **options)
    url, state = oauth.authorize_url(emulator.callback_url)
    code = parse_callback(follow_authorize(url), state)
    return oauth, oauth.exchange_code(code, emulator.callback_url)


@contextlib.contextmanager
def answering(status: int, body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """A server on 127.0.0.1 that answers every GET and POST with this answer: its base URL."""

    class Canned(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = serve_in_background(ThreadingHTTPServer(("127.0.0.1", 0), Canned), "canned")
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        stop_serving(server)


def test_authorize_url_carries_app_callback_and_random_state() -> None:
    oauth = SchwabOAuth("key", "secret", base_url="https://api.example")
    url, state = oauth.authorize_url("https://127.0.0.1:8182")
    _, other_state = oauth.authorize_url("https://127.0.0.1:8182")
    assert url.startswith("https://api.example/v1/oauth/authorize?response_type=code&client_id=key")
    assert "redirect_uri=https%3A%2F%2F127.0.0.1%3A8182" in url and f"state={state}" in url
    assert state != other_state and len(state) >= 20


def test_parse_callback_decodes_schwab_code() -> None:
    link = "https://127.0.0.1:8182/?code=C0.abc%2Bdef%40&session=s-1&state=xyz"
    assert parse_callback(link, "xyz") == "C0.abc+def@"


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("https://127.0.0.1:8182/?code=C%40&session=s&state=other", "state does not match"),
        ("https://127.0.0.1:8182/?error=access_denied&state=xyz", "cancelled"),
        ("https://127.0.0.1:8182/?session=s&state=xyz", "no code="),
        ("https://127.0.0.1:8182/", "no code="),
        ("https://127.0.0.1:8182/?code=C%40&session=s", "no state="),
        ("https://127.0.0.1:8182/?code=a&code=b&state=xyz", "more than once"),
        ("", "no link"),
        ("https://127.0.0.1:8182/?code=" + "a" * 5000, "longer than"),
    ],
)
def test_parse_callback_refuses_unusable_links(link: str, message: str) -> None:
    with pytest.raises(CallbackError, match=message):
        parse_callback(link, "xyz")


def test_code_exchange_and_refresh_against_emulator(emulator) -> None:
    oauth = oauth_for(emulator)
    url, state = oauth.authorize_url(emulator.callback_url)
    code = parse_callback(follow_authorize(url), state)
    first = oauth.exchange_code(code, emulator.callback_url)
    assert first["expires_in"] == 1800 and first["refresh_token"]
    again = oauth.refresh(first["refresh_token"])
    assert again["access_token"] != first["access_token"]
    with pytest.raises(CallbackError, match="works once"):
        oauth.exchange_code(code, emulator.callback_url)  # single use


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("unsupported_token_type", RefreshTokenRejected, "refresh_token_authentication_error"),
        ("invalid_grant", RefreshTokenRejected, "invalid_grant"),
        ("invalid_client_400", RefreshTokenRejected, "400 invalid_client"),
        # The same verdict with 401 (RFC 6749's status for invalid_client under Basic auth).
        ("refresh_token_invalid_401", RefreshTokenRejected, "401 invalid_client"),
        # A 400 that carries no OAuth verdict on the refresh token is not one.
        ("html_400", TemporaryFailure, "400 without a verdict .*an HTML error page"),
        ("empty_400", TemporaryFailure, "400 without a verdict .*an empty body"),
        ("unknown_400", TemporaryFailure, "400 without a verdict .*request_rejected"),
        ("invalid_client", BadAppCredentials, "app key or secret"),
        ("rate_limited", TemporaryFailure, "429"),
        ("server_error", TemporaryFailure, "500"),
        ("bad_gateway", TemporaryFailure, "502"),
        ("unavailable", TemporaryFailure, "503"),
        ("access_denied_html", TemporaryFailure, "HTML error page"),
        ("not_json", TemporaryFailure, "not JSON"),
        ("slow", TemporaryFailure, "read timeout"),
        ("drop", TemporaryFailure, "could not reach"),
    ],
)
def test_every_answer_is_classified(emulator, fault: str, error: type, message: str) -> None:
    emulator.configure(slow_seconds=1.5)
    oauth, token = logged_in(emulator, timeout=0.5, retries=1)
    emulator.set_fault(fault)
    started = time.monotonic()
    with pytest.raises(error, match=message) as info:
        oauth.refresh(token["refresh_token"])
    assert time.monotonic() - started < 10
    assert token["refresh_token"] not in str(info.value)
    assert emulator.app_secret not in str(info.value)


def test_an_answer_without_an_access_token_is_refused_by_the_document(emulator) -> None:
    """The client hands back Schwab's answer as it came; the next document refuses it."""
    oauth, first = logged_in(emulator)
    token = Token.from_login(first)
    emulator.set_fault("missing_access_token")
    answer = oauth.refresh(first["refresh_token"])
    assert "access_token" not in answer
    with pytest.raises(InvalidTokenAnswer, match="has no access_token") as info:
        token.refreshed(answer)
    assert isinstance(info.value, TemporaryFailure)


def test_only_an_oauth_verdict_on_the_refresh_token_means_login_required(emulator) -> None:
    """An edge's HTML 400, an empty 400 or an unknown error leaves the token for a later try."""
    oauth, token = logged_in(emulator, retries=0)
    for fault in EDGE_400_FAULT_KINDS:
        emulator.set_fault(fault, count=1)
        with pytest.raises(TemporaryFailure) as info:
            oauth.refresh(token["refresh_token"])
        assert not isinstance(info.value, LoginRequired), fault
    assert oauth.refresh(token["refresh_token"])["access_token"]  # the token was alive all along


def test_no_retry_starts_that_could_not_end_before_the_lease(emulator) -> None:
    """Schwab answers 503 with Retry-After 2: with 5 s left on the lease (a try takes at most
    1 + 1 s here), the client stops retrying instead of getting an answer too late to store."""
    oauth, token = logged_in(emulator, timeout=1, retries=5)
    emulator.configure(retry_after=2)
    emulator.set_fault("unavailable", count=5)
    emulator.reset_counters()
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match="no time left on the lease") as info:
        oauth.refresh(token["refresh_token"], time_left=5)
    assert time.monotonic() - started < 5
    assert emulator.token_calls == 2 and "503" in str(info.value)
    # Less time left than one try: the first try goes (the caller's lease check came just
    # before), no retry does.
    emulator.reset_counters()
    emulator.set_fault("unavailable", count=5)
    with pytest.raises(TemporaryFailure, match="after 1 tries"):
        oauth.refresh(token["refresh_token"], time_left=1.5)
    assert emulator.token_calls == 1
    emulator.clear_faults()
    # With time for the retries, the same answers end in a token.
    emulator.set_fault("unavailable", count=2)
    assert oauth.refresh(token["refresh_token"], time_left=30)["access_token"]


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        # A verdict on the refresh token is one whatever the status.
        (401, b'{"error": "invalid_grant"}', RefreshTokenRejected, "401 invalid_grant"),
        (
            401,
            b'{"error": "invalid_client", "error_description": "Invalid refresh token"}',
            RefreshTokenRejected,
            "401 invalid_client",
        ),
        (  # the token named by its parameter's name
            401,
            b'{"error": "invalid_client", "error_description": "Invalid refresh_token"}',
            RefreshTokenRejected,
            "401 invalid_client",
        ),
        # invalid_client that does not name the refresh token: the app key or secret.
        (
            401,
            b'{"error": "invalid_client", "error_description": "Client authentication failed"}',
            BadAppCredentials,
            "401 invalid_client.*check the app key and secret",
        ),
        (
            401,
            b'{"error": "invalid_client", "hint": "send the refresh token"}',
            BadAppCredentials,
            "401 invalid_client",
        ),
        # No verdict at all: most likely the credentials.
        (401, b"<html><h1>401 Unauthorized</h1></html>", BadAppCredentials, "HTML error page"),
        (401, b"", BadAppCredentials, "an empty body"),
        (401, b'{"error": "unauthorized"}', BadAppCredentials, "401 unauthorized"),
        # The same bodies with 400: a verdict on the token, or none (retry later).
        (
            400,
            b'{"error": "invalid_client", "error_description": "Client authentication failed"}',
            TemporaryFailure,
            "400 without a verdict",
        ),
    ],
    ids=[
        "401-invalid-grant",
        "401-invalid-client-naming-the-token",
        "401-invalid-client-naming-refresh_token",
        "401-invalid-client",
        "401-invalid-client-token-named-elsewhere",
        "401-html",
        "401-empty",
        "401-unknown",
        "400-invalid-client",
    ],
)
def test_a_401_means_login_required_only_when_it_says_so(
    status: int, body: bytes, error: type, message: str
) -> None:
    """Schwab may answer a dead login 401 invalid_client naming the refresh token; a wrong app
    key or secret is a 401 that names no refresh token."""
    content_type = "text/html" if body.startswith(b"<") else "application/json"
    with answering(status, body, content_type) as base_url:
        oauth = SchwabOAuth("key", "app-s3cret-value", base_url=base_url, retries=0)
        with pytest.raises(error, match=message) as info:
            oauth.refresh("refresh-token-value")
    assert isinstance(info.value, LoginRequired) == (error is RefreshTokenRejected)
    assert "refresh-token-value" not in str(info.value) and "s3cret" not in str(info.value)


def test_transient_fault_is_retried_then_succeeds(emulator) -> None:
    oauth, token = logged_in(emulator, retries=3)
    emulator.reset_counters()
    emulator.set_fault("unavailable", count=2)
    assert oauth.refresh(token["refresh_token"])["access_token"]
    assert emulator.token_calls == 3


def test_retry_after_is_honoured(emulator) -> None:
    oauth, token = logged_in(emulator)
    emulator.set_fault("rate_limited", count=1)  # answers Retry-After: 1
    started = time.monotonic()
    assert oauth.refresh(token["refresh_token"])["access_token"]
    assert time.monotonic() - started >= 0.9


def test_connection_refused_is_temporary() -> None:
    oauth = SchwabOAuth("k", "s", base_url=f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(TemporaryFailure, match="connection refused"):
        oauth.refresh("r" * 40)


def test_a_redirect_is_not_followed(emulator) -> None:
    """A 3xx from the token endpoint would send the refresh token and the app secret wherever
    it points: it is a temporary failure, and the other host hears nothing."""
    hits: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    schwab = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (other, schwab):
        serve_in_background(server, "test-server")
    try:
        oauth = SchwabOAuth(
            "key", "s3cret-value", base_url=f"http://127.0.0.1:{schwab.server_port}"
        )
        with pytest.raises(TemporaryFailure, match="redirect, not followed"):
            oauth.refresh("r" * 40)
    finally:
        for server in (other, schwab):
            stop_serving(server)
    assert hits == []


@pytest.mark.parametrize(
    "base", ["http://api.schwabapi.com", "ftp://127.0.0.1", "https://", "api.schwabapi.com"]
)
def test_the_api_base_must_be_https_or_loopback(base: str) -> None:
    with pytest.raises(UsageError, match="https://"):
        SchwabOAuth("key", "secret", base_url=base)


def test_client_from_settings_uses_their_http_settings() -> None:
    settings = Settings(api_base="http://127.0.0.1:9", http_timeout=2.5, http_retries=0)
    oauth = SchwabOAuth.from_settings("key", "secret", settings)
    assert oauth.base_url == "http://127.0.0.1:9" and oauth.timeout == (2.5, 2.5)
    assert oauth.retries == 0
    assert "secret" not in repr(oauth)


def test_account_fingerprint_names_the_schwab_login_not_the_token(emulator) -> None:
    oauth, first = logged_in(emulator)
    _, second = logged_in(emulator)
    one = oauth.account_fingerprint(first["access_token"])
    assert one == oauth.account_fingerprint(second["access_token"])  # same Schwab user
    assert first["access_token"] not in one
    key_id, _, macs = one.partition(":")
    assert len(key_id) == 8 and [len(mac) for mac in macs.split(".")] == [4]
    # Not a plain hash of the account numbers (short enough to find by trying them all).
    (number,) = DEFAULT_ACCOUNTS  # the emulator's user, who logged in above
    plain = base64.urlsafe_b64encode(hashlib.sha256(number.encode()).digest()[:3]).decode()
    assert plain != macs and number not in one
    # Another app secret: another key id, so a comparison is known to be impossible.
    other = SchwabOAuth(emulator.app_key, "another-secret", base_url=emulator.base_url)
    assert other.account_fingerprint(first["access_token"]).partition(":")[0] != key_id
    assert shares_accounts(one, other.account_fingerprint(first["access_token"])) is None
    with pytest.raises(TemporaryFailure, match="answered 401"):
        oauth.account_fingerprint("not-a-token-" + "x" * 30)


def test_logins_that_link_overlapping_accounts_share_them(emulator) -> None:
    """Schwab's consent screen lets the user link other accounts at each login: a subset or
    another mix of the same accounts overlaps, a stranger's accounts do not."""
    fingerprints = {}
    for name, accounts in {
        "all": ["11110001", "11110002", "11110003"],
        "subset": ["11110002"],
        "mix": ["11110003", "11110004"],
        "stranger": ["99990001", "99990002"],
    }.items():
        emulator.login_as(accounts)
        oauth, answer = logged_in(emulator)
        fingerprints[name] = oauth.account_fingerprint(answer["access_token"])
    assert len(fingerprints["all"].partition(":")[2].split(".")) == 3
    assert shares_accounts(fingerprints["all"], fingerprints["subset"]) is True
    assert shares_accounts(fingerprints["subset"], fingerprints["all"]) is True
    assert shares_accounts(fingerprints["all"], fingerprints["mix"]) is True
    assert shares_accounts(fingerprints["subset"], fingerprints["mix"]) is False
    assert shares_accounts(fingerprints["all"], fingerprints["stranger"]) is False
    # A fingerprint noted by an older version (one hash of the whole set) cannot be compared.
    old = fingerprints["all"].partition(":")[0] + ":" + "ab" * 16
    assert shares_accounts(old, fingerprints["all"]) is None


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"not json",
        b'[{"accountNumber": 12345678}]',
        b'{"accountNumber": "12345678"}',
        b'[{"accountNumber": NaN}]',
        b'[{"accountNumber": "1"}' + b', {"x": "' + b"y" * 70_000 + b'"}]',
    ],
    ids=["empty", "not-json", "number", "object", "nan", "70-kb"],
)
def test_an_unusable_account_list_is_a_temporary_failure(body: bytes) -> None:
    """The login's "same Schwab user" check never decides on an answer it cannot read."""
    with answering(200, body) as base_url:
        oauth = SchwabOAuth("key", "secret", base_url=base_url)
        with pytest.raises(TemporaryFailure, match="no accounts"):
            oauth.account_fingerprint("a" * 40)
