from __future__ import annotations

import time

import pytest

from schwab_tokens.errors import (
    BadAppCredentials,
    CallbackError,
    LoginRequired,
    TemporaryFailure,
)
from schwab_tokens.oauth import SchwabOAuth, parse_callback
from tests.helpers import follow_authorize


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
    oauth = SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url)
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
        ("missing_access_token", TemporaryFailure, "without an access_token"),
        ("slow", TemporaryFailure, "read timeout"),
        ("drop", TemporaryFailure, "could not reach"),
    ],
)
def test_every_answer_is_classified(emulator, fault: str, error: type, message: str) -> None:
    emulator.configure(slow_seconds=1.5)
    oauth = SchwabOAuth(
        emulator.app_key, emulator.app_secret, base_url=emulator.base_url, timeout=0.5, retries=1
    )
    url, state = oauth.authorize_url(emulator.callback_url)
    token = oauth.exchange_code(parse_callback(follow_authorize(url), state), emulator.callback_url)
    emulator.set_fault(fault)
    started = time.monotonic()
    with pytest.raises(error, match=message) as info:
        oauth.refresh(token["refresh_token"])
    assert time.monotonic() - started < 10
    assert token["refresh_token"] not in str(info.value)
    assert emulator.app_secret not in str(info.value)


def test_transient_fault_is_retried_then_succeeds(emulator) -> None:
    oauth = SchwabOAuth(
        emulator.app_key, emulator.app_secret, base_url=emulator.base_url, retries=3
    )
    url, state = oauth.authorize_url(emulator.callback_url)
    token = oauth.exchange_code(parse_callback(follow_authorize(url), state), emulator.callback_url)
    emulator.reset_counters()
    emulator.set_fault("unavailable", count=2)
    assert oauth.refresh(token["refresh_token"])["access_token"]
    assert emulator.token_calls == 3


def test_retry_after_is_honoured(emulator) -> None:
    oauth = SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url)
    url, state = oauth.authorize_url(emulator.callback_url)
    token = oauth.exchange_code(parse_callback(follow_authorize(url), state), emulator.callback_url)
    emulator.set_fault("rate_limited", count=1)  # answers Retry-After: 1
    started = time.monotonic()
    assert oauth.refresh(token["refresh_token"])["access_token"]
    assert time.monotonic() - started >= 0.9


def test_connection_refused_is_temporary() -> None:
    from tests.conftest import free_port

    oauth = SchwabOAuth("k", "s", base_url=f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(TemporaryFailure, match="connection refused"):
        oauth.refresh("r" * 40)
