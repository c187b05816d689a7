"""The token in the forms other clients read: the access view, schwab-py's token document, and
Schwabdev 4's tokens database.

Exports start from what a reader holds (``TokenReader``: an access view, normally), so they
carry no refresh token and no client built on them refreshes by itself: the refresher owns
refreshing. No AWS here.

Schwabdev 4 keeps its tokens in a SQLite database, table ``schwabdev``, one row: the three
tokens, ``expires_in``, ``token_type``, ``scope``, and ISO-8601 issue times of the access token
(it refreshes 61 s before 30 minutes after that) and of the refresh token (it asks for a new
login an hour before 7 days after that). When its access token nears expiry it first re-reads
the row: a row kept current by ``SchwabdevTokens.sync`` is then taken as it is, with no call to
Schwab's token endpoint.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import strictjson
from .access import AccessView
from .errors import ConfigurationError, LoginRequired
from .stores.file import refuse_symlink, write_private
from .token import Token

if TYPE_CHECKING:
    from .reader import TokenReader

FORMATS = ("access", "schwab-py", "schwabdev")

_SCHWABDEV_TABLE = """CREATE TABLE IF NOT EXISTS schwabdev (
    access_token_issued TEXT NOT NULL,
    refresh_token_issued TEXT NOT NULL,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    id_token TEXT NOT NULL,
    expires_in INTEGER,
    token_type TEXT,
    scope TEXT
)"""


def access_json(held: Token | AccessView) -> bytes:
    """The access view (``schemas/access-view.schema.json``)."""
    view = held if isinstance(held, AccessView) else AccessView.from_token(held)
    return view.to_json()


def schwab_py_json(held: Token | AccessView) -> bytes:
    """schwab-py's token document (``schemas/token.schema.json``; from a view, without the
    refresh token, so a schwab-py client on it can never refresh by itself)."""
    return strictjson.dumps(held.schwab_py_document())


def schwabdev_database(held: Token | AccessView) -> bytes:
    """Schwabdev 4's tokens database with this token as its one row: the bytes of a SQLite
    file, for ``stores.file.write_private`` (``export`` writes a new file, renamed over the
    old)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        _fill(db, held)
        return db.serialize()


def write_schwabdev(held: Token | AccessView, path: str | os.PathLike[str]) -> None:
    """Schwabdev 4's tokens database at ``path`` with this token as its one row.

    A new file is written whole, 0600 (``write_private``). An existing one is updated in place,
    in one transaction: a Schwabdev client keeps its database open, so it would never see a
    file renamed over it, and it sees the old row or the new one, never none. Raises
    ``ConfigurationError`` naming the path (a symlink there included)."""
    target = Path(path).expanduser()
    refuse_symlink(target)
    if not target.exists():
        write_private(target, schwabdev_database(held))
        return
    try:
        with contextlib.closing(sqlite3.connect(target, timeout=30)) as db:
            _fill(db, held)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigurationError(
            f"cannot write the Schwabdev tokens database {target} ({type(exc).__name__}); "
            "check the path (in Lambda, under /tmp)"
        ) from None


def _fill(db: sqlite3.Connection, held: Token | AccessView) -> None:
    """Make ``held`` the one row of the ``schwabdev`` table, in one transaction."""
    fields = held.schwab_py_document()["token"]
    row = (
        _iso(held.issued_at),
        _iso(held.creation_timestamp),
        held.access_token,
        # Empty from a view: Schwabdev then has nothing to refresh with, which is the point.
        str(fields.get("refresh_token") or ""),
        str(fields.get("id_token") or ""),
        int(fields.get("expires_in") or 1800),
        str(fields.get("token_type") or "Bearer"),
        str(fields.get("scope") or "api"),
    )
    with db:
        db.execute(_SCHWABDEV_TABLE)
        db.execute("DELETE FROM schwabdev")
        db.execute("INSERT INTO schwabdev VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).isoformat()


class SchwabdevTokens:
    """Keeps a Schwabdev 4 tokens database current from a ``TokenReader``: for a Lambda (or any
    process) that builds one ``schwabdev.Client`` per warm container.

    Call ``sync()`` at the start of each invocation: it rewrites the row only when the reader's
    access token changed (a warm invocation with a fresh token touches nothing). Pass
    ``call_on_auth`` to the client: where Schwabdev would stop and prompt for a login, it raises
    ``LoginRequired`` naming the fix instead.
    """

    def __init__(self, reader: TokenReader, path: str | os.PathLike[str]) -> None:
        self.reader = reader
        self.path = str(Path(path).expanduser())
        self._written = ""
        self._lock = threading.Lock()

    def sync(self) -> bool:
        """Write the row if the access token changed since the last write; whether it did."""
        held = self.reader.token()
        with self._lock:
            if held.fingerprint == self._written and Path(self.path).exists():
                return False
            write_schwabdev(held, self.path)
            self._written = held.fingerprint
            return True

    def call_on_auth(self, auth_url: str) -> str:
        """Schwabdev's ``call_on_auth``: never a prompt in a bot."""
        del auth_url
        raise LoginRequired(
            f"the Schwab login behind {self.reader.store.url} is over or nearly over: log in "
            "again with `schwab-tokens login` (or the link in the refresher's e-mail); "
            "Schwabdev is not the one to log in"
        )


__all__ = [
    "FORMATS",
    "SchwabdevTokens",
    "access_json",
    "schwab_py_json",
    "schwabdev_database",
    "write_schwabdev",
]
