"""The Schwab OAuth emulator answers the way docs/architecture.md's "Schwab's OAuth, as the
emulator plays it" describes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devkit.emulator import EmulatorTransport
from devkit.emulator.server import (
    ACCOUNT_NUMBERS,
    BAD_ANSWER_FAULT_KINDS,
    BAD_REQUEST_HTML,
    DEFAULT_ACCOUNTS,
    EDGE_400_FAULT_KINDS,
    FAULT_KINDS,
    REDIRECT_LOCATION,
    REFRESH_DEAD_BODY,
    REFRESH_TOKEN_INVALID_BODY,
    TOKEN_FAULT_KINDS,
    UNKNOWN_400_BODY,
    Emulator,
    account_hash,
    account_numbers_answer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WEEK = 7 * 24 * 3600


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(slow_seconds=0.3) as emulator:
        yield emulator


def authorize(emu: Emulator, **overrides: str) -> requests.Response:
    params = {
        "response_type": "code",
        "client_id": emu.app_key,
        "redirect_uri": emu.callback_url,
        "state": "st-123",
    }
    params.update(overrides)
    return requests.get(
        emu.base_url + "/v1/oauth/authorize", params=params, allow_redirects=False, timeout=5
    )


def get_code(emu: Emulator) -> str:
    resp = authorize(emu)
    assert resp.status_code == 302
    return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


def token_call(
    emu: Emulator, data: dict[str, str], auth: tuple[str, str] | None = None
) -> requests.Response:
    return requests.post(
        emu.base_url + "/v1/oauth/token",
        data=data,
        auth=auth if auth is not None else (emu.app_key, emu.app_secret),
        timeout=5,
    )


def exchange(emu: Emulator, code: str, redirect_uri: str | None = None) -> requests.Response:
    return token_call(
        emu,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or emu.callback_url,
        },
    )


def login(emu: Emulator) -> dict[str, Any]:
    resp = exchange(emu, get_code(emu))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def refresh(emu: Emulator, refresh_token: str) -> requests.Response:
    return token_call(emu, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def accounts(emu: Emulator, access_token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return requests.get(
        emu.base_url + "/trader/v1/accounts/accountNumbers", headers=headers, timeout=5
    )


# ---------------------------------------------------------------- lifecycle


def test_start_stop_and_base_url() -> None:
    emulator = Emulator().start()
    try:
        port = emulator.port
        assert port > 0
        assert emulator.base_url == f"http://127.0.0.1:{port}"
        assert emulator.start() is emulator  # idempotent
    finally:
        emulator.stop()
    with pytest.raises(RuntimeError):
        _ = emulator.port
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=2)


def test_quiet_server_prints_nothing(emu: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    tok = login(emu)
    refresh(emu, tok["refresh_token"])
    accounts(emu, tok["access_token"])
    requests.get(emu.base_url + "/nowhere", timeout=5)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ---------------------------------------------------------------- authorize


def test_authorize_redirects_with_encoded_code_session_and_state(emu: Emulator) -> None:
    resp = authorize(emu)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(emu.callback_url + "?code=")
    raw = dict(part.split("=", 1) for part in urlsplit(location).query.split("&"))
    assert raw["code"].endswith("%40")
    assert raw["state"] == "st-123"
    uuid.UUID(raw["session"])
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert code.endswith("@") and len(code) >= 32
    assert code in emu.issued_secrets()


def test_authorize_unknown_client_is_400_page(emu: Emulator) -> None:
    resp = authorize(emu, client_id="someone-else")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Location" not in resp.headers


def test_authorize_wrong_redirect_uri_is_400_page(emu: Emulator) -> None:
    for other in ("https://localhost:8182", "https://127.0.0.1:8182/", "https://127.0.0.1:9999"):
        resp = authorize(emu, redirect_uri=other)
        assert resp.status_code == 400, other
        assert "Location" not in resp.headers


def test_authorize_deny_fault_redirects_with_error(emu: Emulator) -> None:
    emu.set_fault("deny", count=1)
    resp = authorize(emu)
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["error_description"]
    assert query["state"] == ["st-123"]
    assert "code" not in query
    assert emu.token_calls == 0
    # count=1: the next authorize is normal again
    assert "code" in parse_qs(urlsplit(authorize(emu).headers["Location"]).query)


# ---------------------------------------------------------------- authorization_code grant


def test_code_exchange_returns_schwab_fields(emu: Emulator) -> None:
    tok = login(emu)
    assert set(tok) == {
        "access_token",
        "refresh_token",
        "id_token",
        "token_type",
        "expires_in",
        "scope",
    }
    assert tok["token_type"] == "Bearer"
    assert tok["expires_in"] == 1800
    assert tok["scope"] == "api"
    values = [tok["access_token"], tok["refresh_token"], tok["id_token"]]
    assert len(set(values)) == 3
    assert all(len(v) >= 32 for v in values)
    assert set(values) <= emu.issued_secrets()


def test_code_is_single_use(emu: Emulator) -> None:
    code = get_code(emu)
    assert exchange(emu, code).status_code == 200
    again = exchange(emu, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert again.json()["error_description"]


def test_code_expires_after_code_lifetime(emu: Emulator) -> None:
    code = get_code(emu)
    emu.advance(31)
    resp = exchange(emu, code)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_code_valid_just_before_expiry(emu: Emulator) -> None:
    code = get_code(emu)
    emu.advance(25)
    assert exchange(emu, code).status_code == 200


def test_code_bound_to_redirect_uri(emu: Emulator) -> None:
    code = get_code(emu)
    resp = exchange(emu, code, redirect_uri="https://127.0.0.1:9999")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_code_still_percent_encoded_is_unknown(emu: Emulator) -> None:
    code = get_code(emu)
    resp = exchange(emu, code[:-1] + "%40")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert exchange(emu, code).status_code == 200


@pytest.mark.parametrize(
    "auth", [("emu-app-key-0001", "wrong"), ("wrong", "emu-app-secret-0001"), None]
)
def test_bad_client_credentials_are_401(emu: Emulator, auth: tuple[str, str] | None) -> None:
    code = get_code(emu)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": emu.callback_url}
    if auth is None:
        resp = requests.post(emu.base_url + "/v1/oauth/token", data=data, timeout=5)
    else:
        resp = token_call(emu, data, auth=auth)
    assert resp.status_code == 401
    assert resp.json() == {"error": "invalid_client"}
    # The failed call did not consume the code.
    assert exchange(emu, code).status_code == 200


@pytest.mark.parametrize("data", [{}, {"grant_type": "password"}, {"grant_type": ""}])
def test_unsupported_grant_type(emu: Emulator, data: dict[str, str]) -> None:
    resp = token_call(emu, data)
    assert resp.status_code == 400
    assert resp.json() == {"error": "unsupported_grant_type"}


# ---------------------------------------------------------------- refresh_token grant


def test_refresh_returns_new_access_and_same_refresh(emu: Emulator) -> None:
    tok = login(emu)
    resp = refresh(emu, tok["refresh_token"])
    assert resp.status_code == 200
    new = resp.json()
    assert set(new) == set(tok)
    assert new["refresh_token"] == tok["refresh_token"]
    assert new["access_token"] != tok["access_token"]
    assert new["id_token"] != tok["id_token"]
    # The old access token stays valid until its own expiry.
    assert accounts(emu, tok["access_token"]).status_code == 200
    assert accounts(emu, new["access_token"]).status_code == 200


def test_refresh_token_dies_seven_days_after_login(emu: Emulator) -> None:
    tok = login(emu)
    emu.advance(WEEK - 60)
    assert refresh(emu, tok["refresh_token"]).status_code == 200  # refreshing does not extend
    emu.advance(61)
    resp = refresh(emu, tok["refresh_token"])
    assert resp.status_code == 400
    assert resp.json() == REFRESH_DEAD_BODY


def test_dead_refresh_answer_is_schwabs_nested_one(emu: Emulator) -> None:
    resp = refresh(emu, "not-a-token-we-issued")
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "unsupported_token_type"
    assert body["error_description"] == (
        '400 Bad Request: "{"error_description":"Exception while authenticating refresh '
        'token [...]","error":"refresh_token_authentication_error"}"'
    )


def test_an_expired_login_can_answer_401_invalid_client(emu: Emulator) -> None:
    """The form schwab-py documents for a login past its 7 days: 401 ``invalid_client`` naming
    the refresh token. Only a login past its week answers so; a revoked one still answers 400."""
    assert emu.expired_login_401 is False
    emu.configure(one_login_per_app=False)
    expired = login(emu)
    emu.advance(WEEK + 1)
    revoked = login(emu)
    emu.revoke_all()
    live = login(emu)
    assert admin(emu, "config", {"expired_login_401": True}).status_code == 200
    resp = refresh(emu, expired["refresh_token"])
    assert resp.status_code == 401 and resp.json() == REFRESH_TOKEN_INVALID_BODY
    resp = refresh(emu, revoked["refresh_token"])
    assert resp.status_code == 400 and resp.json() == REFRESH_DEAD_BODY
    assert refresh(emu, live["refresh_token"]).status_code == 200
    assert admin(emu, "config", {"expired_login_401": "yes"}).status_code == 400
    assert emu.expired_login_401 is True
    emu.configure(expired_login_401=False)
    resp = refresh(emu, expired["refresh_token"])
    assert resp.status_code == 400 and resp.json() == REFRESH_DEAD_BODY
    with Emulator(expired_login_401=True) as other:
        assert other.expired_login_401 is True


def test_revoke_all_kills_refresh_tokens(emu: Emulator) -> None:
    first, second = login(emu), login(emu)
    emu.revoke_all()
    for tok in (first, second):
        resp = refresh(emu, tok["refresh_token"])
        assert resp.status_code == 400
        assert resp.json() == REFRESH_DEAD_BODY
    assert refresh(emu, login(emu)["refresh_token"]).status_code == 200


def test_one_login_per_app_is_the_default(emu: Emulator) -> None:
    assert emu.one_login_per_app is True
    assert Emulator().one_login_per_app is True


def test_new_login_kills_the_older_refresh_token(emu: Emulator) -> None:
    """Schwab keeps one login per app: the second code exchange kills the first login."""
    first = login(emu)
    assert refresh(emu, first["refresh_token"]).status_code == 200
    second = login(emu)
    dead = refresh(emu, first["refresh_token"])
    assert dead.status_code == 400
    assert dead.json() == REFRESH_DEAD_BODY
    # The older access token lives until it expires; the new login is alive.
    assert accounts(emu, first["access_token"]).status_code == 200
    new = refresh(emu, second["refresh_token"])
    assert new.status_code == 200
    assert new.json()["refresh_token"] == second["refresh_token"]
    # A third login kills the second.
    third = login(emu)
    assert refresh(emu, second["refresh_token"]).status_code == 400
    assert refresh(emu, third["refresh_token"]).status_code == 200


def test_a_failed_code_exchange_kills_no_login(emu: Emulator) -> None:
    used = get_code(emu)
    assert exchange(emu, used).status_code == 200
    live = login(emu)
    # A used, unknown, expired or mis-bound code, or a faulted exchange, is no login.
    assert exchange(emu, used).status_code == 400
    assert exchange(emu, "not-a-code").status_code == 400
    assert exchange(emu, get_code(emu), redirect_uri="https://127.0.0.1:1/other").status_code == 400
    expired = get_code(emu)
    emu.advance(31)
    assert exchange(emu, expired).status_code == 400
    for kind in ("server_error", "html_400", "nan_expires_in", "missing_access_token"):
        emu.set_fault(kind, count=1)
        assert exchange(emu, get_code(emu)).status_code in (200, 400, 500)
    wrong_secret = token_call(
        emu,
        {
            "grant_type": "authorization_code",
            "code": get_code(emu),
            "redirect_uri": emu.callback_url,
        },
        auth=(emu.app_key, "nope"),
    )
    assert wrong_secret.status_code == 401
    assert refresh(emu, live["refresh_token"]).status_code == 200


def test_one_login_per_app_off_keeps_every_login() -> None:
    with Emulator(one_login_per_app=False) as emu:
        first, second = login(emu), login(emu)
        for tok in (first, second):
            assert refresh(emu, tok["refresh_token"]).status_code == 200
        emu.configure(one_login_per_app=True)
        third = login(emu)
        for tok in (first, second):
            assert refresh(emu, tok["refresh_token"]).status_code == 400
        assert refresh(emu, third["refresh_token"]).status_code == 200


def test_one_login_per_app_through_admin_route(emu: Emulator) -> None:
    assert admin(emu, "config", {"one_login_per_app": False}).status_code == 200
    assert emu.one_login_per_app is False
    first, second = login(emu), login(emu)
    assert refresh(emu, first["refresh_token"]).status_code == 200
    assert admin(emu, "config", {"one_login_per_app": True}).status_code == 200
    login(emu)
    assert refresh(emu, first["refresh_token"]).status_code == 400
    assert refresh(emu, second["refresh_token"]).status_code == 400
    nonsense: tuple[Any, ...] = ("false", 0, 1, None)
    for bad in nonsense:
        assert admin(emu, "config", {"one_login_per_app": bad}).status_code == 400
        with pytest.raises(TypeError):
            emu.configure(one_login_per_app=bad)
    assert emu.one_login_per_app is True


def test_refresh_requires_client_auth(emu: Emulator) -> None:
    tok = login(emu)
    resp = token_call(
        emu,
        {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
        auth=(emu.app_key, "nope"),
    )
    assert resp.status_code == 401
    assert resp.json() == {"error": "invalid_client"}


# ---------------------------------------------------------------- accounts route


def test_account_numbers_needs_live_access_token(emu: Emulator) -> None:
    tok = login(emu)
    ok = accounts(emu, tok["access_token"])
    assert ok.status_code == 200
    assert ok.json() == [{"accountNumber": "12345678", "hashValue": "ABCDEF0123"}]
    assert accounts(emu, None).status_code == 401
    assert accounts(emu, tok["refresh_token"]).status_code == 401
    assert accounts(emu, "garbage").status_code == 401
    emu.advance(1801)
    expired = accounts(emu, tok["access_token"])
    assert expired.status_code == 401
    expired.json()


# ---------------------------------------------------------------- faults


def test_fault_kinds_exported() -> None:
    """Every exported kind can be set, on the route it belongs to; the hostile answers are
    token-endpoint faults; anything else is refused."""
    emulator = Emulator()
    for kind in FAULT_KINDS:
        emulator.set_fault(kind, count=1)
    assert set(FAULT_KINDS) == set(TOKEN_FAULT_KINDS) | {"deny"}
    assert "redirect" in BAD_ANSWER_FAULT_KINDS and "extra_fields" not in BAD_ANSWER_FAULT_KINDS
    assert len(BAD_ANSWER_FAULT_KINDS) == len(set(BAD_ANSWER_FAULT_KINDS))
    assert set(BAD_ANSWER_FAULT_KINDS) <= set(TOKEN_FAULT_KINDS)
    assert EDGE_400_FAULT_KINDS == ("html_400", "empty_400", "unknown_400")
    assert set(EDGE_400_FAULT_KINDS) <= set(TOKEN_FAULT_KINDS)
    assert "invalid_client_400" in TOKEN_FAULT_KINDS
    assert "invalid_client_400" not in EDGE_400_FAULT_KINDS  # a verdict on the refresh token
    assert "refresh_token_invalid_401" in TOKEN_FAULT_KINDS
    assert len(TOKEN_FAULT_KINDS) == len(set(TOKEN_FAULT_KINDS))
    with pytest.raises(ValueError):
        Emulator().set_fault("nonsense")


JSON_FAULTS = {
    "invalid_grant": (
        400,
        {"error": "invalid_grant", "error_description": "refresh token invalid"},
    ),
    "unsupported_token_type": (400, REFRESH_DEAD_BODY),
    "invalid_client": (401, {"error": "invalid_client"}),
    "invalid_client_400": (
        400,
        {"error": "invalid_client", "error_description": "refresh token invalid"},
    ),
    "refresh_token_invalid_401": (
        401,
        {"error": "invalid_client", "error_description": "refresh token invalid"},
    ),
    "unknown_400": (
        400,
        {"error": "request_rejected", "error_description": "Request could not be processed"},
    ),
}


@pytest.mark.parametrize("kind", sorted(JSON_FAULTS))
def test_json_error_faults(emu: Emulator, kind: str) -> None:
    tok = login(emu)
    emu.set_fault(kind, count=1)
    resp = refresh(emu, tok["refresh_token"])
    status, body = JSON_FAULTS[kind]
    assert resp.status_code == status
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == body
    # Faulted calls change nothing: the refresh token still works.
    assert refresh(emu, tok["refresh_token"]).status_code == 200


def test_json_400_constants() -> None:
    assert JSON_FAULTS["invalid_client_400"][1] == REFRESH_TOKEN_INVALID_BODY
    assert JSON_FAULTS["refresh_token_invalid_401"][1] == REFRESH_TOKEN_INVALID_BODY
    assert JSON_FAULTS["unknown_400"][1] == UNKNOWN_400_BODY


def test_html_400_fault(emu: Emulator) -> None:
    emu.set_fault("html_400", count=1)
    resp = refresh(emu, "x")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text == BAD_REQUEST_HTML
    assert resp.text.startswith("<HTML><HEAD><TITLE>Bad Request</TITLE></HEAD><BODY>")
    assert "<H1>Bad Request</H1>" in resp.text
    assert "error" not in resp.text  # no OAuth JSON, no error code anywhere


def test_empty_400_fault(emu: Emulator) -> None:
    emu.set_fault("empty_400", count=1)
    resp = refresh(emu, "x")
    assert resp.status_code == 400
    assert resp.content == b""
    assert resp.headers["Content-Length"] == "0"
    # The header promises JSON; the body has none.
    assert resp.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        resp.json()


@pytest.mark.parametrize("kind", [*EDGE_400_FAULT_KINDS, "invalid_client_400"])
def test_400_faults_change_no_grant(emu: Emulator, kind: str) -> None:
    """Neither a 400 from the edge nor a faulted verdict touches the login or a code."""
    tok = login(emu)
    code = get_code(emu)
    emu.reset_counters()
    emu.set_fault(kind, count=2)
    assert refresh(emu, tok["refresh_token"]).status_code == 400
    assert exchange(emu, code).status_code == 400
    assert emu.calls_by_grant == {"refresh_token": 1, "authorization_code": 1}
    # The faults wore off; the login refreshes and its access token still works.
    again = refresh(emu, tok["refresh_token"])
    assert again.status_code == 200
    assert again.json()["refresh_token"] == tok["refresh_token"]
    assert accounts(emu, tok["access_token"]).status_code == 200
    # The code was not consumed by the faulted exchange.
    assert exchange(emu, code).status_code == 200


@pytest.mark.parametrize("kind", [*EDGE_400_FAULT_KINDS, "invalid_client_400"])
def test_400_faults_through_admin_route(emu: Emulator, kind: str) -> None:
    tok = login(emu)
    assert admin(emu, "fault", {"kind": kind, "count": 1}).status_code == 200
    first = refresh(emu, tok["refresh_token"])
    assert first.status_code == 400
    assert first.content != json.dumps(REFRESH_DEAD_BODY).encode()
    assert refresh(emu, tok["refresh_token"]).status_code == 200


def test_rate_limited_fault(emu: Emulator) -> None:
    emu.set_fault("rate_limited", count=1)
    resp = refresh(emu, "x")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "1"
    assert isinstance(resp.json(), dict)


@pytest.mark.parametrize(
    ("kind", "status"), [("server_error", 500), ("bad_gateway", 502), ("unavailable", 503)]
)
def test_server_side_faults(emu: Emulator, kind: str, status: int) -> None:
    emu.set_fault(kind, count=1)
    assert refresh(emu, "x").status_code == status


def retry_after_of(emu: Emulator, kind: str) -> str | None:
    emu.set_fault(kind, count=1)
    resp = refresh(emu, "x")
    assert resp.status_code == {"rate_limited": 429, "unavailable": 503}[kind]
    return resp.headers.get("Retry-After")


def test_retry_after_default(emu: Emulator) -> None:
    assert emu.retry_after is None
    assert retry_after_of(emu, "rate_limited") == "1"
    assert retry_after_of(emu, "unavailable") is None


@pytest.mark.parametrize(("seconds", "sent"), [(7, "7"), (0, "0"), (2.5, "3"), (120.0, "120")])
def test_retry_after_configured(emu: Emulator, seconds: float, sent: str) -> None:
    emu.configure(retry_after=seconds)
    assert retry_after_of(emu, "rate_limited") == sent
    assert retry_after_of(emu, "unavailable") == sent
    # Other faults send none.
    emu.set_fault("server_error", count=1)
    assert "Retry-After" not in refresh(emu, "x").headers
    emu.configure(retry_after=None)
    assert retry_after_of(emu, "rate_limited") == "1"
    assert retry_after_of(emu, "unavailable") is None


def test_retry_after_through_constructor_and_admin_route() -> None:
    with Emulator(retry_after=4) as emu:
        assert retry_after_of(emu, "unavailable") == "4"
        assert admin(emu, "config", {"retry_after": 9}).status_code == 200
        assert retry_after_of(emu, "rate_limited") == "9"
        assert retry_after_of(emu, "unavailable") == "9"
        assert admin(emu, "config", {"retry_after": None}).status_code == 200
        assert retry_after_of(emu, "unavailable") is None


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True, [1]])
def test_retry_after_refuses_nonsense(emu: Emulator, bad: Any) -> None:
    emu.configure(retry_after=3)
    with pytest.raises((TypeError, ValueError)):
        emu.configure(retry_after=bad)
    # A refused setting changes nothing, not even the valid settings passed with it.
    with pytest.raises((TypeError, ValueError)):
        emu.configure(access_lifetime=60, retry_after=bad)
    assert emu.retry_after == 3
    assert emu.access_lifetime == 1800
    if not isinstance(bad, float):  # JSON has no NaN or Infinity
        assert admin(emu, "config", {"retry_after": bad}).status_code == 400
    assert retry_after_of(emu, "rate_limited") == "3"


def test_access_denied_html_fault(emu: Emulator) -> None:
    emu.set_fault("access_denied_html", count=1)
    resp = refresh(emu, "x")
    assert resp.status_code == 403
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY>")
    assert "<H1>Access Denied</H1>" in resp.text
    assert resp.text.rstrip().endswith("</BODY></HTML>")


def test_not_json_fault(emu: Emulator) -> None:
    emu.set_fault("not_json", count=1)
    resp = refresh(emu, "x")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text == "<html>maintenance</html>"


def test_missing_access_token_fault(emu: Emulator) -> None:
    tok = login(emu)
    emu.set_fault("missing_access_token", count=1)
    resp = refresh(emu, tok["refresh_token"])
    assert resp.status_code == 200
    body = resp.json()
    assert "access_token" not in body
    assert {"refresh_token", "id_token", "token_type", "expires_in", "scope"} <= set(body)


def test_slow_fault_answers_normally_after_delay(emu: Emulator) -> None:
    tok = login(emu)
    emu.set_fault("slow", count=1)
    started = time.monotonic()
    resp = refresh(emu, tok["refresh_token"])
    assert time.monotonic() - started >= 0.3
    assert resp.status_code == 200
    assert resp.json()["refresh_token"] == tok["refresh_token"]
    started = time.monotonic()
    assert refresh(emu, tok["refresh_token"]).status_code == 200
    assert time.monotonic() - started < 0.3


def test_slow_fault_lets_client_time_out(emu: Emulator) -> None:
    emu.set_fault("slow", count=1)
    with pytest.raises(requests.Timeout):
        requests.post(
            emu.base_url + "/v1/oauth/token", data={"grant_type": "refresh_token"}, timeout=0.1
        )


def test_drop_fault_closes_connection(emu: Emulator) -> None:
    emu.set_fault("drop", count=1)
    with pytest.raises(requests.ConnectionError):
        refresh(emu, "x")
    assert emu.token_calls == 1
    assert refresh(emu, "x").status_code == 400


def test_faulted_call_does_not_consume_code(emu: Emulator) -> None:
    code = get_code(emu)
    for kind in ("server_error", "invalid_grant", "missing_access_token", "drop"):
        emu.set_fault(kind, count=1)
        expect_drop = pytest.raises(requests.ConnectionError)
        with expect_drop if kind == "drop" else contextlib.nullcontext():
            assert exchange(emu, code).status_code != 200 or kind == "missing_access_token"
    assert exchange(emu, code).status_code == 200


def test_fault_count_then_normal(emu: Emulator) -> None:
    emu.set_fault("unavailable", count=2)
    assert [refresh(emu, "x").status_code for _ in range(3)] == [503, 503, 400]


def test_sticky_fault_until_cleared(emu: Emulator) -> None:
    emu.set_fault("server_error")
    assert [refresh(emu, "x").status_code for _ in range(4)] == [500] * 4
    emu.clear_faults()
    assert refresh(emu, "x").status_code == 400


def test_faults_do_not_touch_other_routes(emu: Emulator) -> None:
    tok = login(emu)
    emu.set_fault("server_error")
    assert accounts(emu, tok["access_token"]).status_code == 200
    assert authorize(emu).status_code == 302
    assert emu.token_calls == 1


# ---------------------------------------------------------------- counters and secrets


def test_counters_count_every_token_call(emu: Emulator) -> None:
    tok = login(emu)
    refresh(emu, tok["refresh_token"])
    emu.set_fault("bad_gateway", count=1)
    refresh(emu, tok["refresh_token"])
    token_call(emu, {"grant_type": "password"})
    token_call(emu, {})
    assert emu.token_calls == 5
    assert emu.calls_by_grant == {
        "authorization_code": 1,
        "refresh_token": 2,
        "password": 1,
        "": 1,
    }
    emu.reset_counters()
    assert emu.token_calls == 0
    assert emu.calls_by_grant == {}


def test_issued_secrets_are_distinct_and_recorded(emu: Emulator) -> None:
    seen: list[str] = []
    for _ in range(3):
        code = get_code(emu)
        tok = exchange(emu, code).json()
        again = refresh(emu, tok["refresh_token"]).json()
        seen += [code, tok["access_token"], tok["refresh_token"], tok["id_token"]]
        seen += [again["access_token"], again["id_token"]]
    assert len(seen) == len(set(seen))
    assert set(seen) <= emu.issued_secrets()
    assert all(len(s) >= 32 for s in emu.issued_secrets())


# ---------------------------------------------------------------- admin routes


def admin(emu: Emulator, path: str, payload: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(f"{emu.base_url}/_emulator/{path}", json=payload or {}, timeout=5)


def test_admin_routes(emu: Emulator) -> None:
    tok = login(emu)
    assert admin(emu, "fault", {"kind": "server_error", "count": 1}).status_code == 200
    assert refresh(emu, tok["refresh_token"]).status_code == 500
    assert admin(emu, "fault", {"kind": "unavailable"}).status_code == 200
    assert refresh(emu, tok["refresh_token"]).status_code == 503
    assert admin(emu, "clear").status_code == 200
    assert refresh(emu, tok["refresh_token"]).status_code == 200
    assert admin(emu, "fault", {"kind": "bogus"}).status_code == 400

    stats = requests.get(emu.base_url + "/_emulator/stats", timeout=5).json()
    assert stats == {
        "token_calls": 4,
        "calls_by_grant": {"authorization_code": 1, "refresh_token": 3},
    }

    assert admin(emu, "config", {"access_lifetime": 60, "slow_seconds": 0.1}).status_code == 200
    assert emu.slow_seconds == 0.1
    short = refresh(emu, tok["refresh_token"]).json()
    assert short["expires_in"] == 60
    assert admin(emu, "config", {"bogus": 1}).status_code == 400

    before = emu.now()
    assert admin(emu, "clock", {"advance": 61}).status_code == 200
    assert emu.now() - before >= 61
    assert accounts(emu, short["access_token"]).status_code == 401

    assert admin(emu, "revoke").status_code == 200
    assert refresh(emu, tok["refresh_token"]).status_code == 400


def test_admin_routes_for_callbacks_and_login_as(emu: Emulator) -> None:
    other = "https://127.0.0.1:9444/callback"
    assert authorize(emu, redirect_uri=other).status_code == 400
    assert admin(emu, "callbacks", {"url": other}).status_code == 200
    assert authorize(emu, redirect_uri=other).status_code == 302
    listed = requests.get(emu.base_url + "/_emulator/callbacks", timeout=5)
    assert listed.json() == {"callbacks": [emu.callback_url, other]}
    for bad in ({}, {"url": ""}, {"url": 5}):
        assert admin(emu, "callbacks", bad).status_code == 400

    assert admin(emu, "login_as", {"accounts": ["11112222", "33334444"]}).status_code == 200
    assert emu.login_accounts == ("11112222", "33334444")
    mine = login(emu)
    assert accounts(emu, mine["access_token"]).json() == account_numbers_answer(
        ["11112222", "33334444"]
    )
    payloads: tuple[dict[str, Any], ...] = ({}, {"accounts": []}, {"accounts": None})
    for payload in payloads:
        emu.login_as(["55556666"])
        assert admin(emu, "login_as", payload).status_code == 200
        assert emu.login_accounts == DEFAULT_ACCOUNTS
    for bad_accounts in ("12345678", [None], [""], {"a": 1}, [True]):
        assert admin(emu, "login_as", {"accounts": bad_accounts}).status_code == 400, bad_accounts
    assert emu.login_accounts == DEFAULT_ACCOUNTS


def test_main_runs_in_foreground_and_exits_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--port",
            "0",
            "--app-key",
            "k" * 8,
            "--app-secret",
            "s" * 8,
            "--access-lifetime",
            "120",
            "--callback-url",
            "https://127.0.0.1:8182",
            "--extra-callback-url",
            "https://127.0.0.1:8183/cb",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[1]
        stats = requests.get(base + "/_emulator/stats", timeout=5)
        assert stats.json() == {"token_calls": 0, "calls_by_grant": {}}
        callbacks = requests.get(base + "/_emulator/callbacks", timeout=5).json()
        assert callbacks == {"callbacks": ["https://127.0.0.1:8182", "https://127.0.0.1:8183/cb"]}
        bad = requests.post(base + "/v1/oauth/token", data={"grant_type": "x"}, timeout=5)
        assert bad.status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate(timeout=5)
        assert out == "" and err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- schwab-py through the transport


def make_schwab_client(emu: Emulator, expires_in: int) -> tuple[Any, list[dict[str, Any]]]:
    import schwab.auth as schwab_auth  # schwab-py is a development dependency: never skipped

    from devkit.emulator import point_client_at_emulator

    tok = login(emu)
    now = int(time.time())
    document = {
        "creation_timestamp": now,
        "token": {**tok, "expires_at": now + expires_in},
    }
    writes: list[dict[str, Any]] = []

    def write(doc: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        writes.append(json.loads(json.dumps(doc)))

    client = schwab_auth.client_from_access_functions(
        emu.app_key, emu.app_secret, lambda: document, write
    )
    point_client_at_emulator(client, emu.base_url)
    return client, writes


def test_schwab_py_round_trip(emu: Emulator) -> None:
    client, writes = make_schwab_client(emu, expires_in=1800)
    emu.reset_counters()
    resp = client.get_account_numbers()
    assert resp.status_code == 200
    assert resp.json() == [{"accountNumber": "12345678", "hashValue": "ABCDEF0123"}]
    assert str(resp.url).startswith("https://api.schwabapi.com/trader/v1/accounts/accountNumbers")
    assert emu.token_calls == 0
    assert writes == []


def test_schwab_py_refreshes_through_emulator(emu: Emulator) -> None:
    client, writes = make_schwab_client(emu, expires_in=100)  # < 300 s leeway
    old = client.session.token
    emu.reset_counters()
    resp = client.get_account_numbers()
    assert resp.status_code == 200
    assert emu.calls_by_grant == {"refresh_token": 1}
    assert len(writes) == 1
    doc = writes[0]
    assert set(doc) == {"creation_timestamp", "token"}
    assert doc["token"]["refresh_token"] == old["refresh_token"]
    assert doc["token"]["access_token"] != old["access_token"]
    assert doc["token"]["access_token"] in emu.issued_secrets()
    assert doc["token"]["expires_at"] >= int(time.time()) + 1700
    # The fresh token is good for a while: no second refresh.
    assert client.get_account_numbers().status_code == 200
    assert emu.token_calls == 1


def test_schwab_py_refresh_with_dead_token_raises(emu: Emulator) -> None:
    from authlib.integrations.base_client import OAuthError

    client, writes = make_schwab_client(emu, expires_in=100)
    emu.revoke_all()
    with pytest.raises(OAuthError) as info:
        client.get_account_numbers()
    assert info.value.error == "unsupported_token_type"
    assert writes == []


def test_transport_refuses_other_hosts(emu: Emulator) -> None:
    import httpx

    from devkit.emulator import HostNotEmulatedError

    with httpx.Client(transport=EmulatorTransport(emu.base_url)) as client:
        for url in (
            "https://example.com/v1/oauth/token",
            "http://api.schwabapi.com/v1/oauth/token",
            "https://api.schwabapi.com:8443/v1/oauth/token",
        ):
            with pytest.raises(HostNotEmulatedError):
                client.get(url)
        ok = client.get(
            "https://api.schwabapi.com/v1/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": emu.app_key,
                "redirect_uri": emu.callback_url,
                "state": "s",
            },
        )
        assert ok.status_code == 302
        assert "%40" in ok.headers["Location"]
    with pytest.raises(ValueError):
        EmulatorTransport("https://api.schwabapi.com")


# ---------------------------------------------------------------- several callback URLs

SECOND_CALLBACK = "https://127.0.0.1:9443/callback"


@pytest.fixture
def multi() -> Iterator[Emulator]:
    with Emulator(callback_urls=[SECOND_CALLBACK]) as emulator:
        yield emulator


def code_from(resp: requests.Response) -> str:
    assert resp.status_code == 302
    return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


def test_callback_urls_lists_every_registered_url(multi: Emulator) -> None:
    assert multi.callback_urls == (multi.callback_url, SECOND_CALLBACK)
    multi.register_callback(SECOND_CALLBACK)  # already there: no duplicate
    multi.register_callback(multi.callback_url)
    assert multi.callback_urls == (multi.callback_url, SECOND_CALLBACK)
    with pytest.raises(ValueError):
        multi.register_callback("")
    assert Emulator().callback_urls == ("https://127.0.0.1:8182",)


def test_second_registered_callback_logs_in(multi: Emulator) -> None:
    resp = authorize(multi, redirect_uri=SECOND_CALLBACK)
    assert resp.headers["Location"].startswith(SECOND_CALLBACK + "?code=")
    code = code_from(resp)
    tok = exchange(multi, code, redirect_uri=SECOND_CALLBACK)
    assert tok.status_code == 200
    assert refresh(multi, tok.json()["refresh_token"]).status_code == 200
    # The first callback still works too.
    assert exchange(multi, code_from(authorize(multi))).status_code == 200


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://127.0.0.1:9443/callback/",
        "https://127.0.0.1:9443/Callback",
        "https://127.0.0.1:9443",
        "https://localhost:9443/callback",
        "http://127.0.0.1:9443/callback",
        "https://127.0.0.1:9443/callback?x=1",
        "https://127.0.0.1:9444/callback",
        "",
    ],
)
def test_unregistered_redirect_uri_is_refused(multi: Emulator, redirect_uri: str) -> None:
    resp = authorize(multi, redirect_uri=redirect_uri)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Location" not in resp.headers


def test_code_exchange_needs_the_authorizing_redirect_uri(multi: Emulator) -> None:
    code = code_from(authorize(multi, redirect_uri=SECOND_CALLBACK))
    for other in (multi.callback_url, SECOND_CALLBACK + "/", ""):
        resp = (
            exchange(multi, code, redirect_uri=other)
            if other
            else token_call(multi, {"grant_type": "authorization_code", "code": code})
        )
        assert resp.status_code == 400, other
        assert resp.json()["error"] == "invalid_grant"
    # The refusals did not consume the code.
    assert exchange(multi, code, redirect_uri=SECOND_CALLBACK).status_code == 200

    code = code_from(authorize(multi))
    assert exchange(multi, code, redirect_uri=SECOND_CALLBACK).status_code == 400
    assert exchange(multi, code).status_code == 200


def test_register_callback_at_run_time(emu: Emulator) -> None:
    other = "https://127.0.0.1:8443/later"
    assert authorize(emu, redirect_uri=other).status_code == 400
    emu.register_callback(other)
    code = code_from(authorize(emu, redirect_uri=other))
    assert exchange(emu, code, redirect_uri=other).status_code == 200


# ---------------------------------------------------------------- per-login accounts

OTHER_ACCOUNTS = ["87654321", "11223344"]


def test_default_user_answers_account_numbers_constant(emu: Emulator) -> None:
    assert emu.login_accounts == DEFAULT_ACCOUNTS == ("12345678",)
    tok = login(emu)
    assert accounts(emu, tok["access_token"]).json() == ACCOUNT_NUMBERS
    assert account_numbers_answer(DEFAULT_ACCOUNTS) == ACCOUNT_NUMBERS


def test_account_hash_is_stable_hex() -> None:
    assert account_hash("12345678") == "ABCDEF0123"
    hashes = {n: account_hash(n) for n in [*OTHER_ACCOUNTS, "1", "12345679"]}
    assert len(set(hashes.values())) == len(hashes)
    for number, value in hashes.items():
        int(value, 16)
        assert account_hash(number) == value


def test_each_login_answers_its_own_accounts(emu: Emulator) -> None:
    # Four logins of one app, all refreshed below: as if each were a different app.
    emu.configure(one_login_per_app=False)
    first = login(emu)
    emu.login_as(OTHER_ACCOUNTS)
    assert emu.login_accounts == tuple(OTHER_ACCOUNTS)
    second = login(emu)
    third = login(emu)  # sticky: the same user again
    emu.login_as_default()
    fourth = login(emu)

    other_answer = account_numbers_answer(OTHER_ACCOUNTS)
    assert [e["accountNumber"] for e in other_answer] == OTHER_ACCOUNTS
    expected = [ACCOUNT_NUMBERS, other_answer, other_answer, ACCOUNT_NUMBERS]
    logins = [first, second, third, fourth]
    for tok, answer in zip(logins, expected, strict=True):
        resp = accounts(emu, tok["access_token"])
        assert resp.status_code == 200
        assert resp.json() == answer

    # After a refresh (even one with a different user "logged in" now), each token still
    # answers its own login's accounts.
    emu.login_as(["99990000"])
    for tok, answer in zip(logins, expected, strict=True):
        new = refresh(emu, tok["refresh_token"]).json()
        assert accounts(emu, new["access_token"]).json() == answer
    # The extra_fields answer is a real token of the grant, with the grant's accounts.
    emu.set_fault("extra_fields", count=1)
    new = refresh(emu, second["refresh_token"]).json()
    assert accounts(emu, new["access_token"]).json() == other_answer


def test_user_is_fixed_when_the_browser_signs_in(emu: Emulator) -> None:
    emu.login_as(OTHER_ACCOUNTS)
    code = get_code(emu)
    emu.login_as_default()
    tok = exchange(emu, code).json()
    assert accounts(emu, tok["access_token"]).json() == account_numbers_answer(OTHER_ACCOUNTS)


def test_login_as_validates_and_empty_means_default(emu: Emulator) -> None:
    emu.login_as(["1", "2", "1"])
    assert emu.login_accounts == ("1", "2")
    emu.login_as([])
    assert emu.login_accounts == DEFAULT_ACCOUNTS
    for bad in ("12345678", [None], [""], [1.5]):
        with pytest.raises((TypeError, ValueError)):
            emu.login_as(bad)  # type: ignore[arg-type]
    assert emu.login_accounts == DEFAULT_ACCOUNTS


# ---------------------------------------------------------------- hostile token answers


def hostile(emu: Emulator, kind: str, refresh_token: str) -> requests.Response:
    """One refresh under fault ``kind``; checks the answer is 200 JSON (or the redirect)."""
    emu.set_fault(kind, count=1)
    resp = requests.post(
        emu.base_url + "/v1/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(emu.app_key, emu.app_secret),
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code == (307 if kind == "redirect" else 200)
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp


def dechoke(raw: bytes) -> dict[str, Any]:
    """The body of a nested_answer without its 10,000-deep member, parsed."""
    deep = b"[" * 10_000 + b"]" * 10_000
    assert raw.count(deep) == 1
    body = json.loads(raw.replace(deep, b"[]"))
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("kind", BAD_ANSWER_FAULT_KINDS)
def test_bad_answers_change_no_grant(emu: Emulator, kind: str) -> None:
    tok = login(emu)
    emu.reset_counters()
    resp = hostile(emu, kind, tok["refresh_token"])
    assert emu.token_calls == 1
    assert emu.calls_by_grant == {"refresh_token": 1}
    if kind not in ("redirect", "array_answer"):
        raw = resp.content
        body = dechoke(raw) if kind == "nested_answer" else json.loads(raw)
        # The refresh token in the answer is the grant's own: storing it corrupts nothing.
        assert body["refresh_token"] == tok["refresh_token"]
        access = body["access_token"]
        if access and access.isascii():
            assert accounts(emu, access).status_code != 200  # not a live token
    # Nothing changed: the grant refreshes normally, the old access token still works.
    again = refresh(emu, tok["refresh_token"])
    assert again.status_code == 200
    assert again.json()["refresh_token"] == tok["refresh_token"]
    assert accounts(emu, tok["access_token"]).status_code == 200
    assert emu.token_calls == 2


@pytest.mark.parametrize("kind", BAD_ANSWER_FAULT_KINDS)
def test_bad_answers_do_not_consume_code(emu: Emulator, kind: str) -> None:
    code = get_code(emu)
    emu.set_fault(kind, count=1)
    resp = requests.post(
        emu.base_url + "/v1/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": emu.callback_url},
        auth=(emu.app_key, emu.app_secret),
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code in (200, 307)
    if kind in ("huge_expires_in", "string_expires_in", "huge_answer", "empty_access_token"):
        # A fresh refresh token that belongs to no grant.
        dead = resp.json()["refresh_token"]
        assert dead in emu.issued_secrets()
        assert refresh(emu, dead).status_code == 400
    assert exchange(emu, code).status_code == 200


def test_nan_expires_in(emu: Emulator) -> None:
    raw = hostile(emu, "nan_expires_in", login(emu)["refresh_token"]).content
    assert b'"expires_in": NaN' in raw
    assert math.isnan(json.loads(raw)["expires_in"])
    with pytest.raises(ValueError, match="NaN"):
        json.loads(raw, parse_constant=refuse_constant)  # not JSON: a strict parser refuses it


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def test_infinite_expires_in(emu: Emulator) -> None:
    raw = hostile(emu, "infinite_expires_in", login(emu)["refresh_token"]).content
    assert b'"expires_in": 1e400' in raw
    assert json.loads(raw)["expires_in"] == math.inf


def test_huge_expires_in(emu: Emulator) -> None:
    raw = hostile(emu, "huge_expires_in", login(emu)["refresh_token"]).content
    assert b'"expires_in": 99999999999' in raw
    assert json.loads(raw)["expires_in"] == 99_999_999_999


def test_string_expires_in(emu: Emulator) -> None:
    raw = hostile(emu, "string_expires_in", login(emu)["refresh_token"]).content
    assert b'"expires_in": "1800"' in raw
    assert json.loads(raw)["expires_in"] == "1800"


def test_non_ascii_token(emu: Emulator) -> None:
    raw = hostile(emu, "non_ascii_token", login(emu)["refresh_token"]).content
    assert "\u00e9".encode() in raw  # raw UTF-8, not a \u escape
    assert not raw.isascii()
    access = json.loads(raw.decode("utf-8"))["access_token"]
    assert not access.isascii()
    assert len(access) >= 32
    assert access in emu.issued_secrets()  # the hygiene checks know it
    with pytest.raises(UnicodeEncodeError):
        access.encode("latin-1")  # cannot even travel in an HTTP header


def test_huge_token(emu: Emulator) -> None:
    raw = hostile(emu, "huge_token", login(emu)["refresh_token"]).content
    access = json.loads(raw)["access_token"]
    assert len(access) == 100_000
    assert access.isascii()
    assert access in emu.issued_secrets()


def test_huge_answer(emu: Emulator) -> None:
    tok = login(emu)
    raw = hostile(emu, "huge_answer", tok["refresh_token"]).content
    assert len(raw) > 200_000
    body = json.loads(raw)
    assert len(body["padding"]) == 200_000
    assert body["expires_in"] == 1800
    assert body["token_type"] == "Bearer"
    assert len(body["access_token"]) >= 32


def test_empty_access_token(emu: Emulator) -> None:
    raw = hostile(emu, "empty_access_token", login(emu)["refresh_token"]).content
    assert b'"access_token": ""' in raw
    body = json.loads(raw)
    assert body["access_token"] == ""
    assert body["expires_in"] == 1800


def test_array_answer(emu: Emulator) -> None:
    resp = hostile(emu, "array_answer", login(emu)["refresh_token"])
    assert resp.content == b"[]"


def test_nested_answer(emu: Emulator) -> None:
    raw = hostile(emu, "nested_answer", login(emu)["refresh_token"]).content
    assert raw.endswith(b'"nested": ' + b"[" * 10_000 + b"]" * 10_000 + b"}")
    body = dechoke(raw)
    assert body["nested"] == []
    assert {"access_token", "refresh_token", "expires_in", "token_type"} <= set(body)


def test_redirect_answer(emu: Emulator) -> None:
    resp = hostile(emu, "redirect", login(emu)["refresh_token"])
    assert resp.headers["Location"] == REDIRECT_LOCATION
    assert urlsplit(resp.headers["Location"]).port == 9
    assert resp.content == b""
    assert resp.headers["Content-Length"] == "0"


def test_extra_fields_is_a_good_answer(emu: Emulator) -> None:
    tok = login(emu)
    emu.reset_counters()
    resp = hostile(emu, "extra_fields", tok["refresh_token"])
    body = resp.json()
    known = {"access_token", "refresh_token", "id_token", "token_type", "expires_in", "scope"}
    assert known <= set(body)
    assert len(set(body) - known) >= 12
    assert 2_000 < len(resp.content) < 64_000  # moderate
    assert body["refresh_token"] == tok["refresh_token"]
    assert body["expires_in"] == 1800
    assert body["access_token"] != tok["access_token"]
    assert body["access_token"] in emu.issued_secrets()
    assert accounts(emu, body["access_token"]).status_code == 200  # live
    assert emu.token_calls == 1
    # Faults wear off: the next answer has the six usual fields only.
    assert set(refresh(emu, tok["refresh_token"]).json()) == known


def test_extra_fields_on_code_exchange_makes_a_real_login(emu: Emulator) -> None:
    emu.set_fault("extra_fields", count=1)
    resp = exchange(emu, get_code(emu))
    assert resp.status_code == 200
    body = resp.json()
    assert "x_schwab_trace_id" in body
    assert accounts(emu, body["access_token"]).status_code == 200
    assert refresh(emu, body["refresh_token"]).status_code == 200


def test_extra_fields_keeps_errors_as_they_are(emu: Emulator) -> None:
    emu.set_fault("extra_fields", count=1)
    resp = refresh(emu, "not-a-token-we-issued")
    assert resp.status_code == 400
    assert resp.json() == REFRESH_DEAD_BODY


def test_hostile_kinds_through_admin_route(emu: Emulator) -> None:
    tok = login(emu)
    assert admin(emu, "fault", {"kind": "nan_expires_in", "count": 2}).status_code == 200
    raws = [refresh(emu, tok["refresh_token"]).content for _ in range(3)]
    assert [b"NaN" in raw for raw in raws] == [True, True, False]


# ---------------------------------------------------------------- clock


def test_now_is_a_clock_callable(emu: Emulator) -> None:
    clock: Callable[[], float] = emu.now
    before = clock()
    assert emu.advance(3600) >= before + 3600
    assert clock() >= before + 3600
