"""Every store keeps the same sizes (stores/limits.py, docs/architecture.md "The store
protocol"), and a write over one is refused before the store is called: what was stored before
still reads back.

The limits are the least roomy backend's: a token document 65,536 bytes (a Secrets Manager
``SecretString``'s most), an access view 4 KB (an SSM standard parameter's value), the notes 176
bytes (a staging label). moto accepts larger secrets and parameters than AWS does, so these
tests would not notice a store that passed an oversized write on: they check that none does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from schwab_tokens import strictjson
from schwab_tokens.access import AccessView
from schwab_tokens.errors import InvalidTokenDocument, NotesTooLarge
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.stores.limits import MAX_DOCUMENT_BYTES, MAX_NOTES_BYTES, MAX_VIEW_BYTES
from schwab_tokens.token import Token
from tests.helpers import make_token

BACKENDS = ["file", "s3", "secretsmanager"]


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> TokenStore:
    """A token store of each backend, holding a good token (and the view beside it)."""
    if request.param == "file":
        made = store_from_url(str(tmp_path / "tokens.json"))
    else:
        request.getfixturevalue("moto_aws")
        if request.param == "s3":
            made = store_from_url(request.getfixturevalue("s3_store_url")())
        else:
            made = store_from_url(request.getfixturevalue("sm_store_url")())
    good = make_token("good")
    made.write(good, None)
    made.sync_view(good)
    return made


def padded(token: Token, size: int, char: str = "x") -> Token:
    """``token`` with one more field, so that its stored JSON is ``size`` bytes or just over."""
    fields = {**token.token, "note": ""}
    bare = len(strictjson.dumps({"creation_timestamp": token.creation_timestamp, "token": fields}))
    per_char = len(strictjson.dumps(char)) - 2
    return Token(token.creation_timestamp, {**fields, "note": char * -(-(size - bare) // per_char)})


def test_a_document_at_the_limit_is_kept_and_reads_back(store: TokenStore) -> None:
    before = store.read()
    largest = padded(make_token("largest"), MAX_DOCUMENT_BYTES)
    assert len(largest.to_json()) == MAX_DOCUMENT_BYTES

    store.write(largest, before.version)

    assert store.read().token == largest


def test_a_document_over_the_limit_is_refused_and_the_stored_one_stays(
    store: TokenStore,
) -> None:
    before = store.read()
    # Another tool's document, within the limit as it wrote it (UTF-8), grows past it once
    # written as JSON escapes: parsing takes it, and a store must not keep what it would refuse.
    foreign = padded(make_token("foreign"), MAX_DOCUMENT_BYTES * 3 // 2, "é").to_dict()
    raw = json.dumps(foreign, ensure_ascii=False).encode()
    assert len(raw) <= MAX_DOCUMENT_BYTES
    parsed = Token.parse(raw)
    assert len(parsed.to_json()) > MAX_DOCUMENT_BYTES

    with pytest.raises(InvalidTokenDocument) as refused:
        store.write(parsed, before.version)

    message = str(refused.value)
    assert f"more than any store keeps ({MAX_DOCUMENT_BYTES})" in message
    assert f"nothing was written to {store.url}" in message
    after = store.read()
    assert (after.token, after.version) == (before.token, before.version)


def test_notes_over_the_limit_are_refused_and_the_stored_ones_stay(store: TokenStore) -> None:
    good = {"login": store.read().token.creation_timestamp, "sent": "expiring_24h"}
    version = store.write_notes(good, None)

    with pytest.raises(NotesTooLarge, match=f"exceed the {MAX_NOTES_BYTES} every store"):
        store.write_notes({**good, "account": "x" * MAX_NOTES_BYTES}, version)

    assert store.read_notes() == (good, version)


def test_a_view_over_the_limit_is_refused_and_the_stored_one_stays(store: TokenStore) -> None:
    before, version = store.view.current()
    assert before is not None
    huge = replace(before, access_token="a" * MAX_VIEW_BYTES)

    with pytest.raises(InvalidTokenDocument) as refused:
        store.view.put(huge, version)

    assert f"more than any store keeps for one ({MAX_VIEW_BYTES})" in str(refused.value)
    assert store.view.current() == (before, version)


def test_the_largest_token_schwab_can_give_fits_every_store_and_its_view_too(
    store: TokenStore,
) -> None:
    """The longest fields ``token.py`` keeps from an answer: the document and its view fit."""
    answer = {
        "access_token": "a" * 2048,
        "refresh_token": "r" * 2048,
        "id_token": "i" * 8192,
        "token_type": "t" * 32,
        "scope": "s" * 256,
        "expires_in": 86400,
    }
    token = Token.from_login(answer, now=10**12 - 10**6)
    assert set(token.token) >= set(answer)  # every field kept at its longest

    store.write(token, store.version())
    store.sync_view(token)

    assert store.read().token == token
    stored, _ = store.view.current()
    assert stored == AccessView.from_token(token)
    assert len(stored.to_json()) <= MAX_VIEW_BYTES
