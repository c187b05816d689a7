"""Schwab's token answer is untrusted input: whatever a 200 carries, the store stays readable.

Generated answers (random fields and values, and valid answers with one field broken) go through
``Token.refreshed`` and ``Token.from_login``; each either raises ``InvalidTokenAnswer`` (a
temporary failure: nothing is written) or gives a document that a real file store writes and the
next run reads back, small and valid.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schwab_tokens.errors import ExitCode, InvalidTokenAnswer
from schwab_tokens.stores.file import FileStore
from schwab_tokens.token import MAX_DOCUMENT_BYTES, Token

NOW = 1_800_000_000.0
STORED = Token(
    int(NOW) - 3600,
    {
        "access_token": "I0.old-access-token@",
        "refresh_token": "R0.the-refresh-token@",
        "id_token": "eyJ.x.y",
        "token_type": "Bearer",
        "scope": "api",
        "expires_in": 1800,
        "expires_at": int(NOW) - 60,
    },
)
GOOD = {
    "access_token": "I0.b2F1dGgyLmNkYy5zY2h3YWIuY29t@",
    "refresh_token": "R0.the-refresh-token@",
    "id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
    "token_type": "Bearer",
    "scope": "api",
    "expires_in": 1800,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
broken_field = st.sampled_from([*sorted(GOOD), "expires_at", "padding", "refresh_token"])


def survives(token: Token) -> None:
    """What a store would hold: written by a real store, read back by the next run's parser."""
    raw = token.to_json()
    assert len(raw) < MAX_DOCUMENT_BYTES // 4
    with tempfile.TemporaryDirectory() as folder:
        store = FileStore(Path(folder) / "tokens.json")
        store.write(token, None)
        again = store.read().token
    assert again == token
    assert again.creation_timestamp == STORED.creation_timestamp or again.creation_timestamp == int(
        NOW
    )
    assert math.isfinite(again.access_expires_at) and again.access_expires_at > NOW
    assert again.access_token.isascii() and again.access_token.isprintable()


def refresh_with(answer: Any) -> None:
    try:
        token = STORED.refreshed(answer, now=NOW)
    except InvalidTokenAnswer as exc:
        assert exc.exit_code == ExitCode.TEMPORARY
        assert str(STORED.refresh_token) not in str(exc)
        return
    survives(token)
    assert token.refresh_token in (STORED.refresh_token, answer.get("refresh_token"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*GOOD, "padding"]) | st.text(max_size=8), json_values))
def test_random_answers_never_leave_an_unreadable_store(answer: dict[str, Any]) -> None:
    refresh_with(answer)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_field, json_values)
def test_a_good_answer_with_one_field_broken(field: str, value: Any) -> None:
    refresh_with({**GOOD, field: value})
    try:
        token = Token.from_login({**GOOD, field: value}, now=NOW)
    except InvalidTokenAnswer:
        return
    survives(token)


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "token",
        {**GOOD, "access_token": ""},
        {**GOOD, "access_token": "tok\u00e9n"},
        {**GOOD, "access_token": "x" * 100_000},
        {**GOOD, "access_token": "line\nbreak"},
        {**GOOD, "refresh_token": 12345},
    ],
)
def test_unusable_answers_are_temporary_failures(answer: Any) -> None:
    with pytest.raises(InvalidTokenAnswer):
        STORED.refreshed(answer, now=NOW)


@pytest.mark.parametrize(
    "expires_in", [math.nan, math.inf, -1, 0, 0.5, 86401, 1e400, 10**400, "1800", [1800]]
)
def test_a_lifetime_that_is_there_must_be_sane(expires_in: Any) -> None:
    with pytest.raises(InvalidTokenAnswer, match="expires_in"):
        STORED.refreshed({**GOOD, "expires_in": expires_in}, now=NOW)


def test_a_missing_lifetime_is_schwabs_documented_30_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = {k: v for k, v in GOOD.items() if k != "expires_in"}
    token = STORED.refreshed(answer, now=NOW)
    assert token.access_expires_at == NOW + 1800
    assert "assuming 1800 s" in caplog.text
    survives(token)


def test_unknown_and_oversized_fields_are_dropped() -> None:
    answer = {**GOOD, "padding": "p" * 200_000, "nested": {"a": [1, 2, 3]}, "id_token": "é"}
    token = STORED.refreshed(answer, now=NOW)
    assert set(token.token) == {
        "access_token",
        "refresh_token",
        "token_type",
        "scope",
        "expires_in",
        "expires_at",
    }
    survives(token)


@pytest.mark.parametrize("text", ['{"expires_in": NaN}', '{"a": Infinity}', '{"a": 1e400}'])
def test_json_that_python_accepts_but_json_does_not_is_refused(text: str) -> None:
    from schwab_tokens.errors import InvalidTokenDocument

    document = json.dumps(STORED.to_dict()).replace('"scope": "api"', text[1:-1])
    with pytest.raises(InvalidTokenDocument, match="not valid JSON"):
        Token.parse(document)
