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
Schwab's token endpoint. ``read_schwabdev`` reads such a database back (``schwab-tokens
import``): the table's format lives here, used both ways.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import strictjson
from .access import AccessView
from .errors import ConfigurationError, InvalidTokenDocument, LoginRequired
from .stores.file import refuse_symlink, write_private
from .timefmt import minute
from .token import DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN, Token

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
#: The table's columns, in its order: what ``write_schwabdev`` fills and ``read_schwabdev`` reads.
SCHWABDEV_COLUMNS = (
    "access_token_issued",
    "refresh_token_issued",
    "access_token",
    "refresh_token",
    "id_token",
    "expires_in",
    "token_type",
    "scope",
)
#: The first 16 bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Schwabdev's database is one row in two 4 KB pages; anything far larger is not one.
MAX_SCHWABDEV_BYTES = 256 * 1024
#: Two machines' clocks disagree a little: a time further ahead than this was never real.
CLOCK_SKEW_SECONDS = 300
#: How Schwabdev marks a token it encrypted at rest (its ``encryption`` key).
_ENCRYPTED = "enc:"
#: ``datetime.isoformat()``, as Schwabdev writes its times (the offset absent when naive).
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}:\d{2}|Z)?")


def access_json(held: Token | AccessView) -> bytes:
    """The access view (``schemas/access-view.schema.json``)."""
    return AccessView.of(held).to_json()


def schwab_py_json(held: Token | AccessView) -> bytes:
    """schwab-py's token document (``schemas/token.schema.json``), as JSON bytes.

    From a view it has no refresh token, so a schwab-py client on it can never refresh.
    """
    return strictjson.dumps(held.schwab_py_document())


def schwabdev_database(held: Token | AccessView) -> bytes:
    """Schwabdev 4's tokens database with this token as its one row, as SQLite file bytes."""
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


def read_schwabdev(path: str | os.PathLike[str], *, now: float | None = None) -> Token:
    """The login in Schwabdev 4's tokens database at ``path``, as a validated token document.

    The login's time is the refresh token's issue time. The file is opened read-only and
    nothing in it is trusted (schema, sizes, times). Raises ``InvalidTokenDocument`` naming the
    column at fault (never quoting a token), ``LoginRequired`` when it holds no login
    schwab-tokens can use (none yet, or encrypted), and ``ConfigurationError`` when it cannot
    be read.
    """
    now = time.time() if now is None else now
    target = Path(path).expanduser()
    source = f"the Schwabdev database {path}"
    try:
        size = target.stat().st_size
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path} ({exc.strerror})") from None
    if size > MAX_SCHWABDEV_BYTES:
        raise InvalidTokenDocument(
            f"{source} is {size} bytes, more than a Schwabdev tokens database holds "
            f"({MAX_SCHWABDEV_BYTES}); it is not one"
        )
    uri = f"file:{quote(str(target.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            # A hostile file's schema may hold functions (in generated columns) and huge values.
            db.execute("PRAGMA trusted_schema = OFF")
            db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_SCHWABDEV_BYTES)
            row = _schwabdev_row(db, source)
    except sqlite3.Error as exc:
        raise InvalidTokenDocument(
            f"{source} cannot be read as a SQLite database ({type(exc).__name__}: {str(exc)[:100]})"
        ) from None
    return _schwabdev_token(row, source, now)


def _schwabdev_row(db: sqlite3.Connection, source: str) -> tuple[object, ...]:
    kinds = db.execute(
        "SELECT type FROM sqlite_master WHERE name = 'schwabdev' COLLATE NOCASE"
    ).fetchall()
    if kinds != [("table",)]:
        raise InvalidTokenDocument(
            f"{source} has no schwabdev table: it is not a Schwabdev 4 tokens database"
        )
    # table_info leaves generated columns out: a column computed by the file is not one.
    columns = {str(info[1]) for info in db.execute("PRAGMA table_info(schwabdev)")}
    missing = [name for name in SCHWABDEV_COLUMNS if name not in columns]
    if missing:
        raise InvalidTokenDocument(
            f"{source}'s schwabdev table has no column {', '.join(missing)}: it is not "
            "Schwabdev 4's"
        )
    # Our own column names, never the file's: nothing from it is spliced into the query.
    select = f"SELECT {', '.join(SCHWABDEV_COLUMNS)} FROM schwabdev LIMIT 2"  # noqa: S608
    rows = db.execute(select).fetchall()
    if not rows:
        raise LoginRequired(f"{source} holds no login (Schwabdev's login never finished)")
    if len(rows) > 1:
        raise InvalidTokenDocument(f"{source} holds several rows; Schwabdev 4 keeps one")
    return tuple(rows[0])


def _schwabdev_token(row: tuple[object, ...], source: str, now: float) -> Token:
    values = dict(zip(SCHWABDEV_COLUMNS, row, strict=True))
    for name in ("access_token", "refresh_token"):
        value = values[name]
        if isinstance(value, str) and value.startswith(_ENCRYPTED):
            raise LoginRequired(
                f"{source} holds tokens Schwabdev encrypted (its encryption key), which "
                "schwab-tokens does not read"
            )
    login = _issued(values, "refresh_token_issued", source, now)
    issued = _issued(values, "access_token_issued", source, now)
    lifetime = values["expires_in"]
    if lifetime is None:  # Schwabdev itself assumes Schwab's 30 minutes then
        lifetime = DEFAULT_EXPIRES_IN
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not 1 <= lifetime <= MAX_EXPIRES_IN
    ):
        raise InvalidTokenDocument(
            f"{source}: expires_in must be a number of seconds, 1 to {MAX_EXPIRES_IN}"
        )
    fields: dict[str, object] = {
        "access_token": values["access_token"],
        "refresh_token": values["refresh_token"],
        "expires_in": int(lifetime),
        "expires_at": int(issued + lifetime),
    }
    for name in ("id_token", "token_type", "scope"):
        if isinstance(values[name], str) and values[name]:
            fields[name] = values[name]
    return Token.from_client({"creation_timestamp": int(login), "token": fields}, source=source)


def _issued(values: dict[str, object], column: str, source: str, now: float) -> float:
    """A Schwabdev issue time in epoch seconds (naive means UTC, as Schwabdev reads it)."""
    value = values[column]
    problem = f"{source}: {column} is not an ISO-8601 time such as 2026-01-02T03:04:05+00:00"
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value):
        raise InvalidTokenDocument(problem)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:  # the right shape, not a real time (month 13, hour 25)
        raise InvalidTokenDocument(problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch = moment.timestamp()
    if epoch < 0:
        raise InvalidTokenDocument(f"{source}: {column} is before 1970")
    if epoch > now + CLOCK_SKEW_SECONDS:
        raise InvalidTokenDocument(
            f"{source}: {column} is in the future ({minute(epoch)}); it is not a time "
            "Schwabdev wrote (or this machine's clock is wrong)"
        )
    return epoch


class SchwabdevTokens:
    """Keeps a Schwabdev 4 tokens database current from a ``TokenReader``.

    For a process that builds one ``schwabdev.Client`` per warm container. Call ``sync()`` at
    the start of each invocation: it rewrites the row (the access view alone) only when the
    reader's access token changed. Pass ``call_on_auth`` to the client: where Schwabdev would
    prompt for a login, it raises ``LoginRequired`` naming the fix instead.
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
            # The view, even of a whole document: Schwabdev never holds a refresh token to use.
            write_schwabdev(AccessView.of(held), self.path)
            self._written = held.fingerprint
            return True

    def call_on_auth(self, auth_url: str) -> str:
        """Schwabdev's ``call_on_auth``: never a prompt in a bot.

        Always raises ``LoginRequired`` naming the fix.
        """
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
    "read_schwabdev",
    "schwab_py_json",
    "schwabdev_database",
    "write_schwabdev",
]
