from __future__ import annotations

import json

import pytest

from schwab_tokens.errors import InvalidTokenDocument
from schwab_tokens.token import MAX_TOKEN_CHARS, REFRESH_TOKEN_LIFETIME, Token, fingerprint

LOGIN = 1_732_300_000


def document(**inner: object) -> dict:
    token = {
        "access_token": "A" * 40,
        "refresh_token": "R" * 40,
        "id_token": "I" * 40,
        "token_type": "Bearer",
        "expires_in": 1800,
        "scope": "api",
        "expires_at": LOGIN + 1800,
    }
    token.update(inner)
    return {"creation_timestamp": LOGIN, "token": token}


def test_round_trip_keeps_schwab_py_shape() -> None:
    token = Token.parse(json.dumps(document()))
    assert json.loads(token.to_json()) == document()


def test_expiry_arithmetic() -> None:
    token = Token.parse(json.dumps(document()))
    assert token.access_expires_at == LOGIN + 1800
    assert token.refresh_expires_at == LOGIN + REFRESH_TOKEN_LIFETIME == LOGIN + 7 * 86400
    assert token.access_seconds_left(now=LOGIN + 1000) == 800
    assert token.refresh_seconds_left(now=LOGIN + 86400) == 6 * 86400
    assert token.needs_refresh(600, now=LOGIN + 1300)
    assert not token.needs_refresh(600, now=LOGIN + 1100)


def test_refreshed_keeps_login_time_and_refresh_token() -> None:
    token = Token.parse(json.dumps(document()))
    new = token.refreshed({"access_token": "B" * 40, "expires_in": 1800}, now=LOGIN + 1500)
    assert new.creation_timestamp == LOGIN
    assert new.refresh_token == token.refresh_token
    assert new.access_token == "B" * 40
    assert new.access_expires_at == LOGIN + 1500 + 1800


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[]", "JSON object"),
        (json.dumps({"token": document()["token"]}), "creation_timestamp"),
        (json.dumps({"creation_timestamp": LOGIN}), "no token object"),
        (json.dumps(document(refresh_token=None)), "token.refresh_token"),
        (json.dumps(document(access_token="")), "token.access_token"),
        (json.dumps(document(expires_at="soon")), "token.expires_at"),
        ("x" * 70_000, "more than a token document"),
        (json.dumps(document()).replace(str(LOGIN), "NaN", 1), "NaN is not a JSON value"),
        (json.dumps(document()).replace(str(LOGIN), "Infinity", 1), "not valid JSON"),
        (json.dumps(document(expires_at=1)).replace(": 1}", ": 1e400}"), "out of range"),
        (json.dumps(document(access_token="a" * (MAX_TOKEN_CHARS + 1))), "longer than 2048"),
        (json.dumps(document(refresh_token="r\u00e9")), "not printable ASCII"),
    ],
)
def test_bad_documents_name_the_problem(raw: str | bytes, named: str) -> None:
    with pytest.raises(InvalidTokenDocument, match=named):
        Token.parse(raw, source="tokens.json")


def test_errors_and_repr_never_show_the_tokens() -> None:
    token = Token.parse(json.dumps(document()))
    assert "A" * 40 not in repr(token) and "R" * 40 not in str(token)
    with pytest.raises(InvalidTokenDocument) as info:
        Token.parse('{"creation_timestamp": 1, "token": {"access_token": "' + "S" * 40 + '"}}')
    assert "S" * 40 not in str(info.value)


def test_fingerprint_is_short_stable_and_not_the_token() -> None:
    assert fingerprint("secret-value") == fingerprint("secret-value")
    assert fingerprint("secret-value") != fingerprint("secret-valuf")
    assert len(fingerprint("x" * 100)) == 10 and "x" not in fingerprint("x" * 100)


def test_a_token_of_the_longest_allowed_length_is_kept() -> None:
    token = Token.parse(json.dumps(document(access_token="a" * MAX_TOKEN_CHARS)))
    assert len(token.access_token) == MAX_TOKEN_CHARS
