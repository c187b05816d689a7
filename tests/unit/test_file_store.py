"""The local file store's own promises: private files, notes beside the token, the flock lease."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from schwab_tokens.errors import ConfigurationError, ExitCode, LeaseBusy, WriteConflict
from schwab_tokens.stores import store_from_url
from tests.helpers import make_token


def test_notes_sit_beside_the_token_privately_with_compare_and_swap(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "tokens.json"
    store = store_from_url(str(path))
    version = store.write(make_token(), None)
    assert store.read_notes() == ({}, None)
    first = store.write_notes({"login": 1}, None)
    with pytest.raises(WriteConflict):
        store.write_notes({"login": 2}, None)
    notes = path.with_name("tokens.json.notes")
    assert json.loads(notes.read_text()) == {"login": 1}
    assert stat.S_IMODE(notes.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.read_notes() == ({"login": 1}, first)
    assert store.version() == version


def test_unreadable_notes_start_afresh(tmp_path: Path) -> None:
    store = store_from_url(str(tmp_path / "tokens.json"))
    store.write(make_token(), None)
    (tmp_path / "tokens.json.notes").write_text("{not json")
    notes, version = store.read_notes()
    assert notes == {} and version is not None
    store.write_notes({"login": 1}, version)  # replaced, conditionally on what was there
    assert store.read_notes()[0] == {"login": 1}


def test_a_waiter_enters_without_the_lease_once_the_holder_wrote(tmp_path: Path) -> None:
    url = str(tmp_path / "tokens.json")
    holder, waiter = store_from_url(url), store_from_url(url)
    version = holder.write(make_token(), None)
    with holder.lease(ttl=30, wait=1) as held:
        assert held and held.valid()
        with pytest.raises(LeaseBusy), waiter.lease(ttl=30, wait=0.1):
            pytest.fail("two holders")
        holder.write(make_token("new"), version)
        with waiter.lease(ttl=30, wait=5, abandon_if=lambda: waiter.version() != version) as lease:
            assert not lease.held and not lease  # stopped queueing: nothing to do any more


def test_a_file_where_a_folder_should_be_is_a_clear_configuration_error(tmp_path: Path) -> None:
    """``--store notes.txt/tokens.json`` (a typo): exit 5 naming the path, never a traceback."""
    (tmp_path / "notes.txt").write_text("not a folder")
    store = store_from_url(str(tmp_path / "notes.txt" / "tokens.json"))
    for action in (store.read, lambda: store.write(make_token(), None)):
        with pytest.raises(ConfigurationError, match=r"notes\.txt") as caught:
            action()
        assert caught.value.exit_code == ExitCode.CONFIGURATION
        assert "check the path" in str(caught.value)
