"""TokenReader on the local file store: the warm cache and the schwab-py hooks."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.user import login
from schwab_tokens.errors import InvalidTokenDocument, UsageError
from schwab_tokens.reader import TokenReader
from schwab_tokens.stores.file import FileStore
from schwab_tokens.token import Token
from tests.fakes import AheadClock
from tests.helpers import make_token


class CountingStore(FileStore):
    """A real file store that counts its reads (the reader is the code under test)."""

    reads = 0

    def read_raw(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().read_raw()


def test_warm_reader_reads_the_store_once(emulator, tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "tokens.json")
    token = login(store, emulator)
    store.reads = 0
    reader = TokenReader(store)
    assert all(reader.access_token() == token.access_token for _ in range(10_000))
    assert store.reads == 1


def test_reader_rereads_when_within_margin(emulator, tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "tokens.json")
    emulator.configure(access_lifetime=400)
    login(store, emulator)
    store.reads = 0
    # The 400 s token has more than 398.5 s left for at most the next 1.5 s.
    clock = AheadClock()
    reader = TokenReader(store, reread_margin=398.5, min_reread=0.2, clock=clock)
    reader.access_token()
    reader.access_token()
    assert store.reads == 1
    clock.advance(1.6)
    reader.access_token()
    assert store.reads == 2


def test_from_env_needs_the_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="TOKEN_STORE_URL"):
        TokenReader.from_env()
    monkeypatch.setenv("TOKEN_STORE_URL", "file:tokens.json")
    assert TokenReader.from_env().store.url == "file:tokens.json"
    assert TokenReader.from_env({"TOKEN_STORE_URL": "other.json"}).store.url == "other.json"


def test_schwab_py_write_of_a_broken_token_is_refused(emulator, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    login(store, emulator)
    before = (tmp_path / "tokens.json").read_bytes()
    _, write = TokenReader(store).access_functions()
    with pytest.raises(InvalidTokenDocument, match="access_token"):
        write({"creation_timestamp": 1, "token": {"refresh_token": "x", "expires_at": 1}})
    assert (tmp_path / "tokens.json").read_bytes() == before


def test_schwab_py_write_stores_only_what_the_next_run_can_read(emulator, tmp_path: Path) -> None:
    """authlib keeps whatever Schwab's answer carried (Python's json accepts NaN; a field may be
    huge); the hook stores the token's own fields only, so the store stays readable."""
    store = FileStore(tmp_path / "tokens.json")
    token = login(store, emulator)
    _, write = TokenReader(store).access_functions()
    document = token.to_dict()
    document["token"] = {
        **document["token"],
        "access_token": "A" * 40,
        "expires_in": 1800,
        "token_type": "Bearer",
        "odd": float("nan"),
        "padding": "x" * 70_000,
    }
    write(document)
    stored = FileStore(tmp_path / "tokens.json").read().token  # the next run's parser
    assert stored.access_token == "A" * 40 and stored.refresh_token == token.refresh_token
    assert "odd" not in stored.token and "padding" not in stored.token
    assert stored.token["token_type"] == "Bearer"
    assert (tmp_path / "tokens.json").stat().st_size < 2048


@pytest.mark.parametrize(
    "odd",
    [
        {"scope": "x" * 300},
        {"scope": ["api"]},
        {"token_type": "Bearer\n"},
        {"expires_in": -5},
        {"expires_in": True},
    ],
    ids=["long-scope", "scope-list", "type-unprintable", "negative-lifetime", "bool-lifetime"],
)
def test_a_document_of_another_tool_still_makes_a_readable_view(
    tmp_path: Path, odd: dict[str, object]
) -> None:
    """Fields a document may carry but a view may not take their usual values in the view, so
    the bots reading it keep working."""
    token = make_token("odd")
    document = token.to_dict()
    document["token"].update(odd)
    store = FileStore(tmp_path / "tokens.json")
    parsed = Token.from_dict(document)
    store.write(parsed, None)
    store.sync_view(parsed)
    reader = TokenReader(str(tmp_path / "tokens.access.json"))
    assert reader.access_token() == token.access_token
