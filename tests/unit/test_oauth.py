from __future__ import annotations

import hashlib
import time

import pytest

from schwab_tokens.errors import (
    BadAppCredentials,
    CallbackError,
    InvalidTokenAnswer,
    LoginRequired,
    TemporaryFailure,
    UsageError,
)
from schwab_tokens.oauth import SchwabOAuth, parse_callback
from schwab_tokens.settings import Settings
from schwab_tokens.token import Token
from tests.emulator import DEFAULT_ACCOUNTS
from tests.helpers import follow_authorize, free_port, oauth_for


def logged_in(emulator, **options) -> tuple[SchwabOAuth, dict]:
    """The client and the answer to a completed login's code exchange."""
    oauth = oauth_for(emulator, **options)
    url, state = oauth.authorize_url(emulator.callback_url)
    code = parse_callback(follow_authorize(url), state)
    return oauth, oauth.exchange_code(code, emulator.callback_url)


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
        ("unsupported_token_type", LoginRequired, "refresh_token_authentication_error"),
        ("invalid_grant", LoginRequired, "invalid_grant"),
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
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from schwab_tokens.listener import serve_in_background, stop_serving

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
    key_id, _, mac = one.partition(":")
    assert len(key_id) == 8 and len(mac) == 32
    # Not a plain hash of the account numbers (short enough to find by trying them all).
    numbers = sorted(DEFAULT_ACCOUNTS)  # the emulator's user, who logged in above
    assert hashlib.sha256("\n".join(numbers).encode()).hexdigest()[:32] != mac
    # Another app secret: another key id, so a comparison is known to be impossible.
    other = SchwabOAuth(emulator.app_key, "another-secret", base_url=emulator.base_url)
    assert other.account_fingerprint(first["access_token"]).partition(":")[0] != key_id
    with pytest.raises(TemporaryFailure, match="answered 401"):
        oauth.account_fingerprint("not-a-token-" + "x" * 30)


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
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from schwab_tokens.listener import serve_in_background, stop_serving

    class Accounts(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = serve_in_background(ThreadingHTTPServer(("127.0.0.1", 0), Accounts), "accounts")
    try:
        oauth = SchwabOAuth("key", "secret", base_url=f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(TemporaryFailure, match="no accounts"):
            oauth.account_fingerprint("a" * 40)
    finally:
        stop_serving(server)
