"""What the CLI leaves on this machine's disk, run as a user runs it (a subprocess, Schwab on the
emulator): `export` writes private files atomically and never through a symlink, a failed login
leaves nothing behind, and the checkout ignores the token files a user or the demo makes there.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit import REPO
from devkit.emulator import Emulator
from devkit.user import CLI, Run, cli_env, follow_authorize, login, paste_login, run_cli
from schwab_tokens.stores import access_url
from schwab_tokens.stores.file import FileStore

FORMATS = ("access", "schwab-py", "schwabdev")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def store(emulator: Emulator, tmp_path: Path) -> str:
    """A file store holding a login (and its access view, which exports read)."""
    path = tmp_path / "store" / "tokens.json"
    login(FileStore(path), emulator)
    return str(path)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default umask, whatever the test runner's: files and folders it would leave
    group- and world-readable unless the CLI sets their modes itself."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def export(emulator: Emulator, store: str, kind: str, output: Path) -> Run:
    return run_cli(
        ["export", "--format", kind, "--output", str(output), "--store", store], cli_env(emulator)
    )


def exported_access_token(kind: str, output: Path) -> str:
    if kind == "schwabdev":
        with sqlite3.connect(output) as db:
            (row,) = db.execute("SELECT access_token FROM schwabdev").fetchall()
        return str(row[0])
    document = json.loads(output.read_text())
    return str((document["token"] if kind == "schwab-py" else document)["access_token"])


# -- export ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", FORMATS)
def test_export_replaces_a_readable_file_with_a_private_one(
    emulator: Emulator, store: str, tmp_path: Path, kind: str, open_umask: None
) -> None:
    """An earlier export the user made readable to others (or another tool's 0644 file) ends
    0600, as a new file: a reader holding the old one never sees half of the new one."""
    output = tmp_path / "bots" / "token"
    assert export(emulator, store, kind, output).code == 0
    output.chmod(0o644)
    before = output.stat().st_ino
    run = export(emulator, store, kind, output)
    assert run.code == 0, run.err
    assert mode(output) == 0o600
    assert output.stat().st_ino != before  # renamed over the old one, not written into it
    assert exported_access_token(kind, output) == FileStore(store).read().token.access_token
    assert os.listdir(output.parent) == ["token"]  # no temporary file left


@pytest.mark.parametrize("which", ["document", "view"])
def test_export_refuses_to_write_over_the_stores_own_files(
    emulator: Emulator, store: str, which: str
) -> None:
    """Exported over tokens.json, a copy without a refresh token would end the login."""
    target = Path(store) if which == "document" else Path(access_url(store))
    before = target.read_bytes()
    run = export(emulator, store, "schwab-py", target)
    assert run.code == 2, run.text
    assert "the token store's own file" in run.err
    assert target.read_bytes() == before


@pytest.mark.parametrize("dangling", [False, True], ids=["link", "dangling link"])
@pytest.mark.parametrize("kind", FORMATS)
def test_export_refuses_a_symlink_at_the_output(
    emulator: Emulator, store: str, tmp_path: Path, kind: str, dangling: bool
) -> None:
    """Writing through the link would write wherever it points (a file of someone else's, or a
    new one); replacing it would silently cut the user's link. Either way: refused, exit 5 (the
    command line is right, the disk holds something to change), and nothing is touched."""
    elsewhere = tmp_path / "elsewhere.txt"
    if not dangling:
        elsewhere.write_text("not yours to overwrite")
    output = tmp_path / "bots" / "token"
    output.parent.mkdir()
    output.symlink_to(elsewhere)
    run = export(emulator, store, kind, output)
    assert run.code == 5, run.err
    assert f"{output} is a symbolic link" in run.err
    assert "remove it, or name the file it points to" in run.err
    assert output.is_symlink() and os.readlink(output) == str(elsewhere)
    if dangling:
        assert not elsewhere.exists()
    else:
        assert elsewhere.read_text() == "not yours to overwrite"
    assert os.listdir(output.parent) == ["token"]


@pytest.mark.parametrize("kind", FORMATS)
def test_export_creates_missing_folders_private(
    emulator: Emulator, store: str, tmp_path: Path, kind: str, open_umask: None
) -> None:
    output = tmp_path / "new" / "deeper" / "token"
    run = export(emulator, store, kind, output)
    assert run.code == 0, run.err
    assert mode(tmp_path / "new") == mode(tmp_path / "new" / "deeper") == 0o700
    assert mode(output) == 0o600


# -- a failed login ------------------------------------------------------------------------------
def _no_code(link: str) -> str:
    base, _, query = link.partition("?")
    state = [part for part in query.split("&") if part.startswith("state=")]
    return base + "?session=abc&" + "&".join(state)


@pytest.mark.parametrize("case", ["no code", "wrong state", "code refused", "ctrl-c"])
def test_a_failed_first_login_leaves_nothing_behind(
    emulator: Emulator, tmp_path: Path, case: str
) -> None:
    """No token before, none after: and no lock, notes or view either (a stray `tokens.json.lock`
    makes a user think something was stored, and lands in their git status)."""
    folder = tmp_path / "bots"
    folder.mkdir()
    args = ["--store", str(folder / "tokens.json"), "--callback-url", emulator.callback_url]
    env = cli_env(emulator)
    if case == "ctrl-c":
        run = _interrupted_paste_login(args, env)
        assert run.code == 130, run.err
    else:

        def link_for(authorize_url: str) -> str:
            link = follow_authorize(authorize_url)
            if case == "no code":
                return _no_code(link)
            if case == "wrong state":
                return link.split("state=")[0] + "state=not-the-state"
            emulator.advance(31)  # Schwab's code lives 30 s: Schwab refuses it
            return link

        run = paste_login(args, env, link_for=link_for)
        assert run.code == 3, run.err
    assert sorted(os.listdir(folder)) == []


def _interrupted_paste_login(args: list[str], env: dict[str, str]) -> Run:
    """`login --paste`, and Ctrl-C while it waits for the pasted address."""
    proc = subprocess.Popen(
        [*CLI, "login", "--paste", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    said = []
    for line in proc.stdout:  # the authorize URL is printed after the store's preflight
        said.append(line)
        if "/v1/oauth/authorize?" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    return Run(proc.returncode, "".join(said) + rest, err)


def test_a_login_still_refuses_a_symlink_at_the_lock_before_going_to_schwab(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The lock is not created by the check before a login, but a link planted at its name is
    still refused then, before Schwab's code is spent, and nothing is created where it points."""
    victim = tmp_path / "victim.txt"
    (tmp_path / "tokens.json.lock").symlink_to(victim)
    run = paste_login(
        ["--store", str(tmp_path / "tokens.json"), "--callback-url", emulator.callback_url],
        cli_env(emulator),
    )
    assert run.code == 5 and "symlink" in run.err, run.err
    assert "/v1/oauth/authorize?" not in run.out
    assert not victim.exists() and not (tmp_path / "tokens.json").exists()


# -- the checkout ----------------------------------------------------------------------------------
NAMES = (
    "tokens.json",
    "tokens.json.lock",
    "tokens.json.notes",
    "tokens.access.json",
    "demo-tokens.json",
    "docs/tokens.json",
)


def test_the_checkout_ignores_every_token_file() -> None:
    """`git status` never offers a token, its lock, notes or view for a commit, wherever in the
    checkout a user ran the CLI; and no file the repository tracks is ignored by it."""
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *NAMES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(ignored.stdout.split()) == sorted(NAMES), ignored.stderr
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert tracked.stdout == ""
