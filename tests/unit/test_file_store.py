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


def test_the_check_before_a_login_leaves_nothing_behind(tmp_path: Path) -> None:
    """No lock, temp file or folder is left by ``preflight``: a login that then fails (a bad
    link, Ctrl-C, Schwab refusing the code) leaves the disk as it was. The first write still
    makes the folders 0700 and the lock 0600."""
    path = tmp_path / "new" / "deeper" / "tokens.json"
    store = store_from_url(str(path))
    store.preflight()
    assert list(tmp_path.iterdir()) == []
    store.write(make_token(), None)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.with_name("tokens.json.lock").stat().st_mode) == 0o600
    store.preflight()  # an existing lock is taken and released, and stays
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]


@pytest.mark.parametrize("name", ["tokens.json", "tokens.json.notes", "tokens.access.json"])
def test_a_symlink_where_the_store_writes_is_refused_before_a_login(
    tmp_path: Path, name: str
) -> None:
    """Replacing the link would cut it (and a second link to the same file would have its own
    lock); writing through it would write wherever it points. ``preflight`` refuses it, so a
    login does not spend Schwab's code first, and so does every write."""
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("not yours")
    path = tmp_path / "tokens.json"
    (tmp_path / name).symlink_to(elsewhere)
    store = store_from_url(str(path))
    with pytest.raises(ConfigurationError, match=f"{name} is a symbolic link") as caught:
        store.preflight()
    assert caught.value.exit_code == ExitCode.CONFIGURATION
    with pytest.raises(ConfigurationError, match="remove it, or name the file it points to"):
        if name == "tokens.json.notes":
            store.write_notes({"login": 1}, store.read_notes_raw()[1])
        elif name == "tokens.access.json":
            store.sync_view(make_token())
        else:
            store.write(make_token(), store.version())
    assert elsewhere.read_text() == "not yours" and (tmp_path / name).is_symlink()
