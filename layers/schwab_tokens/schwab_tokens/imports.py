"""Bringing a login another client holds into a store (``schwab-tokens import``), so its users
switch without logging in again.

Two files are read, told apart by their content: schwab-py's token file
(``{"creation_timestamp": .., "token": {..}}``, as its ``client_from_login_flow`` and
``client_from_manual_flow`` write it) and Schwabdev 4's tokens database (``exports``, which
holds that table's format both ways). The file is input from outside: capped in size, strict
JSON, the database opened read-only, every field checked and refused by name, never quoted.

The login keeps its own time, so the 7-day warnings stay right. The write is conditional on the
version read and never replaces a newer login unless forced. With the app's credentials the
login is first checked with one refresh: a login Schwab refuses never enters the store, so a
working login there is never replaced by a dead one. No AWS here.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .access import FORMAT as VIEW_FORMAT
from .errors import (
    ConfigurationError,
    InvalidTokenDocument,
    LoginRequired,
    RefreshTokenRejected,
    WriteConflict,
)
from .exports import CLOCK_SKEW_SECONDS, SQLITE_MAGIC, read_schwabdev
from .login_flow import WRITE_ATTEMPTS, login_account, note_login
from .notes import found_over
from .policy import REPLACED_IF_LEFT_SECONDS
from .stores.base import Stored, TokenStore
from .timefmt import minute
from .token import MAX_DOCUMENT_BYTES, MAX_EXPIRES_IN, Token, load_json

if TYPE_CHECKING:
    from .oauth import SchwabOAuth

SCHWAB_PY = "schwab-py"
SCHWABDEV = "schwabdev"
#: What may come before a JSON object: a UTF-8 byte-order mark and white space.
_JSON_LEAD = b"\xef\xbb\xbf \t\r\n"


@dataclass(frozen=True)
class Imported:
    """What ``import_login`` did: the login it read, what it stored and what that replaced.

    ``kind`` is ``schwab-py`` or ``schwabdev``; ``checked`` says whether Schwab refreshed it
    first; ``written`` is False when the store already held this login, as fresh or fresher.
    """

    kind: str
    token: Token
    written: bool
    checked: bool
    replaced: Token | None = None
    #: The store held a document that did not parse (it is replaced like any older login).
    replaced_unreadable: bool = False


def read_login(path: str, *, now: float | None = None) -> tuple[str, Token]:
    """The login in ``path`` and its kind, told apart by content (SQLite or JSON).

    Raises ``InvalidTokenDocument`` for anything else or any field out of its range, naming
    it, and ``LoginRequired`` for a file that holds no login this tool can carry on (an old
    schwab-py's, whose login time is unknown; Schwabdev's encrypted or unfinished one).
    """
    now = time.time() if now is None else now
    head = _read_head(path)
    if head.startswith(SQLITE_MAGIC):
        return SCHWABDEV, read_schwabdev(path, now=now)
    if head.lstrip(_JSON_LEAD)[:1] in (b"{", b"["):
        return SCHWAB_PY, _schwab_py(head, f"the schwab-py token file {path}", now)
    what = "is empty" if not head.strip() else "is neither JSON nor SQLite"
    raise InvalidTokenDocument(
        f"{path} {what}: give schwab-py's token file (JSON, as its client_from_login_flow "
        "writes it) or Schwabdev 4's tokens.db (SQLite)"
    )


def import_login(
    path: str,
    store: TokenStore,
    *,
    force: bool = False,
    oauth: SchwabOAuth | None = None,
    clock: Callable[[], float] = time.time,
) -> Imported:
    """Read the login in ``path`` and store it in ``store``, keeping its ``creation_timestamp``.

    Returns what it did. With ``oauth`` (the app's token endpoint), the login is refreshed
    once and the refreshed token is stored. Raises (nothing written) ``LoginRequired`` for a
    login whose 7 days are over or that Schwab refuses, ``ConfigurationError`` for a newer login
    in the store (unless ``force``), ``WriteConflict`` when the store kept changing, and what
    ``read_login`` raises.
    """
    fix = f"log in again with `schwab-tokens login --store {store.url}`"
    kind, token = _alive(path, fix, clock())
    held = _held(store)
    kept = _kept(held, token, force, store.url, path)
    if kept is not None:
        return Imported(kind, kept, written=False, checked=False)
    checked = oauth is not None
    same = _same_login(held, token) and not checked
    if same and found_over(store, token):
        # The store's notes hold a run's verdict on this very login: a copy of it is no news.
        raise LoginRequired(
            f"a run found the login in {path} (of {minute(token.creation_timestamp)}) over: "
            f"Schwab refused its refresh token. Nothing was imported; {fix}"
        )
    if oauth is not None:
        token = _refreshed(oauth, token, path, fix, clock)
    for _ in range(WRITE_ATTEMPTS):
        try:
            store.write(token, held.version)
            break
        except WriteConflict:
            # Another writer got in first (a login, a refresh): decide again on what it wrote.
            held = _held(store)
            kept = _kept(held, token, force, store.url, path)
            if kept is not None:
                return Imported(kind, kept, written=False, checked=checked)
    else:
        raise WriteConflict(f"{store.url} kept changing while the login was being imported")
    # The same login, unchecked: its notes (a verdict, its account) still hold.
    account = login_account(oauth, token) if oauth is not None else None
    note_login(store, token, account, keep_notes=same)
    return Imported(
        kind,
        token,
        written=True,
        checked=checked,
        replaced=None if held.stored is None else held.stored.token,
        replaced_unreadable=held.unreadable,
    )


def _alive(path: str, fix: str, now: float) -> tuple[str, Token]:
    """The kind and login in ``path``; ``LoginRequired`` naming ``fix`` if it is over."""
    try:
        kind, token = read_login(path, now=now)
    except LoginRequired as exc:
        raise LoginRequired(f"{exc}; nothing was imported: {fix}") from None
    if token.refresh_seconds_left(now) <= 0:
        raise LoginRequired(
            f"the login in {path} (of {minute(token.creation_timestamp)}) ended 7 days after "
            f"it, at {minute(token.refresh_expires_at)}: Schwab no longer refreshes it, so "
            f"there is nothing to import; {fix}"
        )
    return kind, token


# -- the store's side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Held:
    """What the store holds: a document (``stored``), nothing, or one that does not parse
    (``unreadable``), and the version a write must name."""

    stored: Stored | None
    version: str | None
    unreadable: bool = False


def _held(store: TokenStore) -> _Held:
    try:
        stored = store.read()
    except LoginRequired:
        return _Held(None, None)
    except InvalidTokenDocument:
        # Nothing refreshes it as it is; a login replaces it, and so does an import.
        return _Held(None, store.version(), unreadable=True)
    return _Held(stored, stored.version)


def _same_login(held: _Held, token: Token) -> bool:
    """Whether the store holds ``token``'s login (a login is known by its time)."""
    return held.stored is not None and (
        held.stored.token.creation_timestamp == token.creation_timestamp
    )


def _kept(held: _Held, token: Token, force: bool, url: str, path: str) -> Token | None:
    """The store's token when it stays (the same login, as fresh or fresher), None when
    ``token`` replaces it. A login is known by its time (``creation_timestamp``, as the notes
    know it); a newer one than ``token`` is replaced only when forced (``ConfigurationError``
    otherwise)."""
    if held.stored is None:
        return None
    current = held.stored.token
    if _same_login(held, token):
        return current if current.access_expires_at >= token.access_expires_at else None
    if current.creation_timestamp > token.creation_timestamp and not force:
        raise ConfigurationError(
            f"{url} holds a newer login (of {minute(current.creation_timestamp)}) than {path} "
            f"(of {minute(token.creation_timestamp)}); it was not replaced. Schwab keeps one "
            "login per app, so the older one is likely over already; add --force to replace "
            "the newer one all the same"
        )
    return None


def _refreshed(
    oauth: SchwabOAuth, token: Token, path: str, fix: str, clock: Callable[[], float]
) -> Token:
    """``token`` after one refresh: the check that Schwab still honours the login."""
    try:
        answer = oauth.refresh(token.refresh_token)
    except RefreshTokenRejected as exc:
        left = token.refresh_seconds_left(clock())
        why = (
            "another login to this app has ended it (Schwab keeps one login per app: a new "
            "login with any tool ends the older one), or it is another app's login than the "
            "app key given here"
            if left > REPLACED_IF_LEFT_SECONDS
            else "its 7 days are nearly over"
        )
        raise LoginRequired(
            f"{exc}: the login in {path} (of {minute(token.creation_timestamp)}, "
            f"{left / 86400:.1f} days left by its time) is over: {why}. Nothing was imported; "
            f"{fix}"
        ) from None
    return token.refreshed(answer, now=clock())


# -- schwab-py's token file ------------------------------------------------------------------------
def _read_head(path: str) -> bytes:
    """The file's bytes, up to one more than a token document may have (a database is read
    by SQLite itself). Only a regular file: a FIFO or a device is refused, never waited on."""
    target = Path(path).expanduser()
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigurationError(f"{path} is not a file")
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_DOCUMENT_BYTES:
                chunk = os.read(fd, MAX_DOCUMENT_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path} ({exc.strerror})") from None


def _schwab_py(raw: bytes, source: str, now: float) -> Token:
    try:
        document = load_json(raw, source)
    except InvalidTokenDocument:
        field = _not_finite(raw)
        if field:
            raise InvalidTokenDocument(f"{source}: {field} is not a finite number") from None
        raise
    if not isinstance(document, dict):
        raise InvalidTokenDocument(f"{source} must be a JSON object")
    if document.get("format") == VIEW_FORMAT:
        raise InvalidTokenDocument(
            f"{source} is an access view: it holds no refresh token, so there is no login in "
            "it to import; give the token file the client refreshes"
        )
    if "creation_timestamp" not in document and (
        "refresh_token" in document or "access_token" in document
    ):
        # schwab-py before its token metadata (and tda-api) wrote the bare token: nobody knows
        # when that login began, so nobody could say when it ends. schwab-py refuses it too.
        raise LoginRequired(
            f"{source} was written by an old schwab-py (the bare token, no creation_timestamp): "
            "its login time is unknown, so nobody can say when its 7 days end"
        )
    inner = document.get("token")
    if isinstance(inner, dict):
        if not inner.get("refresh_token"):
            raise InvalidTokenDocument(
                f"{source} has no token.refresh_token: nothing can refresh it (an export holds "
                "none); give the token file the client refreshes"
            )
        lifetime = inner.get("expires_in")
        if lifetime is not None and not _seconds(lifetime, 1, MAX_EXPIRES_IN):
            raise InvalidTokenDocument(
                f"{source}: token.expires_in must be a number of seconds, 1 to {MAX_EXPIRES_IN}"
            )
    token = Token.from_client(document, source=source)
    if token.creation_timestamp > now + CLOCK_SKEW_SECONDS:
        raise InvalidTokenDocument(
            f"{source}: creation_timestamp is in the future ({minute(token.creation_timestamp)}); "
            "it is not a time schwab-py wrote (or this machine's clock is wrong)"
        )
    if token.access_expires_at > now + MAX_EXPIRES_IN + CLOCK_SKEW_SECONDS:
        raise InvalidTokenDocument(
            f"{source}: token.expires_at is more than a day ahead "
            f"({minute(token.access_expires_at)}); Schwab's access tokens last 30 minutes"
        )
    return token


def _seconds(value: object, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def _not_finite(raw: bytes) -> str | None:
    """Where a document that strict JSON refused holds ``NaN``, an infinity or ``1e400``, so
    the message can name the field; None when that is not why it was refused."""
    try:
        lenient = json.loads(raw)
    except (ValueError, RecursionError):
        return None

    def walk(value: Any, where: str) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return where or "the document"
        items: Any = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, item in items:
            found = walk(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None

    try:
        return walk(lenient, "")
    except RecursionError:
        return None


__all__ = ["SCHWABDEV", "SCHWAB_PY", "Imported", "import_login", "read_login"]
