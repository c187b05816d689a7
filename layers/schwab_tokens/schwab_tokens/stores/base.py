"""The seam between the refresh policy and where the token lives.

Every backend offers the same things: read the document with an opaque version, write
conditionally on the version read, hold a short single-flight lease around a refresh, and keep a
small record of notes beside the token (which Schwab login it is, which notifications were sent)
with the same compare-and-swap. Stores know nothing of OAuth; parsing, messages and the lease's
bookkeeping are shared here, and the sizes every store keeps in ``limits.py``, so every backend
behaves and reports alike (docs/architecture.md, "The store protocol").
"""

from __future__ import annotations

import abc
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import strictjson
from ..access import AccessView
from ..errors import (
    InvalidTokenDocument,
    LeaseBusy,
    LoginRequired,
    SchwabTokensError,
    WriteConflict,
)
from ..token import Token
from .limits import MAX_NOTES_BYTES, encode_notes

__all__ = [
    "MAX_NOTES_BYTES",
    "Lease",
    "RawDocument",
    "Stored",
    "TokenStore",
    "View",
    "encode_notes",
    "polled_lease",
    "response_date",
    "safety",
]

log = logging.getLogger(__name__)


class RawDocument(NamedTuple):
    """The stored bytes as read, the version a conditional write must name, and when written.

    ``written_at`` is when the store last wrote them (epoch seconds, from store metadata), if
    known.
    """

    raw: bytes
    version: str
    written_at: float | None = None


@dataclass(frozen=True)
class Stored:
    """A document as read and parsed, with the version a conditional write must name."""

    token: Token
    version: str
    written_at: float | None = None


class Lease:
    """A single-flight lease as held by one writer.

    ``held`` is False when the waiter entered without it (the holder's work made its own
    unnecessary). ``valid()`` says whether it is still safely ours: the deadline is measured on
    this process's monotonic clock from *before* the request that took the lease, and the store
    judges expiry on its own clock from after it, so a holder's deadline always comes first,
    whatever its wall clock says. A holder past its deadline must neither call Schwab nor write.
    """

    def __init__(
        self, held: bool, deadline: float = math.inf, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.held = held
        self.deadline = deadline
        self._clock = clock

    def valid(self) -> bool:
        """Whether the lease is held and its deadline not yet reached (never raises)."""
        return self.held and self._clock() < self.deadline

    def time_left(self) -> float:
        """Seconds until the deadline (infinite for a lease that never expires, 0 if not held)."""
        return max(0.0, self.deadline - self._clock()) if self.held else 0.0

    def __bool__(self) -> bool:
        """``held``."""
        return self.held


def safety(ttl: float) -> float:
    """How many seconds before its ttl a holder stops.

    The margin covers clock-rate drift and the store's rounding.
    """
    return min(10.0, ttl * 0.1)


class View(abc.ABC):
    """Where a store keeps its access view (``access.AccessView``), and how consumers read it."""

    url: str
    #: The token store this view belongs to, for messages ("" when a consumer opened it alone).
    store_url: str = ""

    @abc.abstractmethod
    def read_raw(self) -> RawDocument:
        """The stored view's bytes, version and write time.

        Raises ``LoginRequired`` if there is none yet.
        """

    def missing_error(self) -> LoginRequired:
        """The ``LoginRequired`` for a view not written yet, naming the command that writes it."""
        writer = f" --store {self.store_url}" if self.store_url else ""
        return LoginRequired(
            f"no access view at {self.url} yet: every writer keeps it beside the token; "
            f"run `schwab-tokens refresh{writer}` (or log in) to write it"
        )

    def usable(self, raw: bytes | str, version: str) -> tuple[AccessView | None, str | None]:
        """``current()``'s answer for stored ``raw``: the parsed view and ``version``.

        None and ``version`` for a view that does not parse (it is then rewritten). Never
        raises.
        """
        try:
            return AccessView.parse(raw, source=self.url), version
        except InvalidTokenDocument:
            return None, version

    @abc.abstractmethod
    def current(self) -> tuple[AccessView | None, str | None]:
        """The stored view if a consumer can use it, and the version a write must name.

        The view is None when there is none, it does not parse, or consumers could not read it;
        the version is None when there is none yet.
        """

    @abc.abstractmethod
    def put(self, view: AccessView, expected_version: str | None) -> None:
        """Store ``view`` if the stored one is still ``expected_version``.

        Atomically where the backend can. Raises ``WriteConflict`` if it changed, and
        ``InvalidTokenDocument`` for a view over ``limits.MAX_VIEW_BYTES`` (before any store
        call: what was stored stays).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class TokenStore(abc.ABC):
    """One token document in one place, its notes, and the access view beside it.

    The place is a file, an S3 object or a secret.
    """

    url: str

    def read(self) -> Stored:
        """The parsed document with its version.

        Raises ``LoginRequired`` when there is none, ``InvalidTokenDocument`` when what is there
        is not a token (it is then never overwritten by a refresh), and what ``read_raw`` raises.
        """
        try:
            raw, version, written_at = self.read_raw()
            token = Token.parse(raw, source=self.url)
        except InvalidTokenDocument as exc:
            raise InvalidTokenDocument(f"{exc}. {self.relogin_fix()}") from None
        return Stored(token, version, written_at)

    def relogin_fix(self) -> str:
        """The sentence that says what puts a good document back.

        A login rewrites whatever is stored.
        """
        return (
            "Nothing refreshes it as it is: `schwab-tokens login --store "
            f"{self.url}` replaces it with a new login"
        )

    @abc.abstractmethod
    def read_raw(self) -> RawDocument:
        """The stored bytes, their version and write time.

        At most ``limits.MAX_DOCUMENT_BYTES`` + 1 bytes: ``read`` refuses more. Raises
        ``LoginRequired`` if there are none; a backend that knows the size first may raise
        ``InvalidTokenDocument`` for a larger document.
        """

    @abc.abstractmethod
    def version(self) -> str | None:
        """The current version, or None when nothing is stored (the document is not parsed)."""

    @abc.abstractmethod
    def write(self, token: Token, expected_version: str | None) -> str:
        """Store ``token`` only if the current version is still ``expected_version``.

        ``expected_version`` None means no document yet. Returns the new version. Raises
        ``WriteConflict`` if it changed, and ``InvalidTokenDocument`` for a document over
        ``limits.MAX_DOCUMENT_BYTES`` (before any store call: what was stored stays).
        """

    @abc.abstractmethod
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[Lease]:
        """Hold the single-flight lease: at most one holder per document across all writers.

        Waits up to ``wait`` seconds for a busy lease, then raises ``LeaseBusy``. A holder that
        dies loses the lease within ``ttl`` seconds (on the store's clock). While waiting,
        ``abandon_if`` is asked between tries; when it answers true the context is entered
        without the lease (``held`` False), so a loser stops queueing once the holder's work
        makes its own unnecessary.
        """

    # -- the access view ------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def view(self) -> View:
        """This store's access view (where ``stores.access_url`` says it is)."""

    def sync_view(self, token: Token, *, login_required: bool = False) -> str:
        """Make the access view mirror ``token``, a document this store holds.

        ``token`` was just read or just written: never one that failed validation. The view is
        marked ``login_required`` when a run found its login over. Returns ``"written"``, or
        ``"current"`` when the view already covers it (``AccessView.covers``): a view never goes
        back to an older token, nor loses the mark for the same token. Raises what the view's
        backend raises (no access, no key).
        """
        wanted = AccessView.from_token(token, login_required=login_required)
        for _ in range(3):
            current, version = self.view.current()
            if current is not None and current.covers(wanted):
                return "current"
            try:
                self.view.put(wanted, version)
            except WriteConflict:
                continue  # another writer's view landed meanwhile: look at it again
            return "written"
        return "current"  # others keep writing it; the next run looks again

    # -- notes --------------------------------------------------------------------------------
    @abc.abstractmethod
    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        """The notes' bytes and version, or ``(None, None)`` when there are none yet."""

    @abc.abstractmethod
    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        """Replace the notes only if their version is still ``expected_version``.

        ``expected_version`` None means none yet. Returns the new version; raises
        ``WriteConflict`` if they changed.
        """

    def read_notes(self) -> tuple[dict[str, Any], str | None]:
        """The notes and their version.

        The notes are an empty dict when none or unreadable (they are advisory); the version is
        None when there are none. Raises what ``read_notes_raw`` raises.
        """
        raw, version = self.read_notes_raw()
        if raw is None:
            return {}, None
        try:
            data = strictjson.loads(raw[: MAX_NOTES_BYTES + 1])
        except strictjson.NotJSON:
            log.warning("the notes beside %s are not JSON; starting afresh", self.url)
            return {}, version
        return (data if isinstance(data, dict) else {}), version

    def write_notes(self, notes: dict[str, Any], expected_version: str | None) -> str:
        """Replace the notes if their version is still ``expected_version``.

        Returns the new version. Raises ``NotesTooLarge`` past ``MAX_NOTES_BYTES`` (before any
        store call, so the notes stored stay), ``WriteConflict`` if they changed.
        """
        raw = encode_notes(notes)
        return self.write_notes_raw(raw, expected_version)

    # -- before a login -------------------------------------------------------------------------
    def preflight(self) -> None:
        """Prove that this store can be written, before a login spends Schwab's one-time code.

        Reads the current document (none is fine) and takes and releases the lease, which needs
        the same write permission, key and bucket or secret as the token itself. Raises what
        ``read_raw`` and ``lease`` raise (``LoginRequired`` aside).
        """
        with suppress(LoginRequired):
            self.read_raw()
        with self.lease(30.0, 10.0):
            pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- messages every backend shares ------------------------------------------------------------
    def no_token_error(self) -> LoginRequired:
        """The ``LoginRequired`` for a store that holds no token, naming the login command."""
        return LoginRequired(
            f"no token at {self.url}: run `schwab-tokens login --store {self.url}`"
        )

    def changed_error(self, what: str = "changed") -> WriteConflict:
        """The ``WriteConflict`` for a conditional write that lost: the store ``what``."""
        return WriteConflict(f"{self.url} {what} since it was read; not overwritten")

    def deleted_error(self) -> WriteConflict:
        """The ``WriteConflict`` for a document deleted since it was read."""
        return WriteConflict(f"{self.url} was deleted since it was read; not overwritten")


def response_date(response: Mapping[str, Any]) -> float | None:
    """The store's clock: the HTTP ``Date`` of an AWS answer in epoch seconds (whole seconds).

    None when it has none or it does not parse. Never raises.
    """
    # Imported here: email.utils costs a consumer's cold start ~10 ms, and only an answer from
    # AWS (after boto3 is loaded anyway) carries a Date.
    from email.utils import parsedate_to_datetime

    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    value = headers.get("date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


@contextmanager
def polled_lease(
    try_acquire: Callable[[], bool],
    release: Callable[[], None],
    wait: float,
    ttl: float,
    what: str,
    abandon_if: Callable[[], bool] | None = None,
    expires: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease]:
    """A lease taken by polling ``try_acquire`` with jittered sleeps until ``wait`` runs out.

    Shared by the backends whose lease is a record (S3 object, secret label, lock file), and
    by the tests' in-memory store on its fake ``clock`` and ``sleep``. The deadline of a lease
    that ``expires`` starts from before the attempt that took it. Yields the ``Lease`` (not held
    when ``abandon_if`` answered true); raises ``LeaseBusy`` when ``wait`` ran out, and what
    ``try_acquire`` raises. A failed ``release`` is logged, never raised.
    """
    deadline = clock() + wait
    delay = 0.05
    while True:
        attempt = clock()
        if try_acquire():
            break
        if abandon_if is not None and abandon_if():
            yield Lease(False, clock=clock)
            return
        if clock() >= deadline:
            raise LeaseBusy(
                f"another writer is refreshing {what} and did not finish within {wait:g} s; "
                "the stored token is untouched, try again"
            )
        sleep(min(delay * (0.5 + random.random()), max(0.0, deadline - clock())))
        delay = min(delay * 2, 1.0)
    lease = Lease(True, attempt + ttl - safety(ttl) if expires else math.inf, clock)
    try:
        yield lease
    finally:
        try:
            release()
        except SchwabTokensError as exc:
            # The work under the lease is done (or failed on its own); a lease that cannot be
            # released just lives out its ttl, so this must not replace the body's outcome.
            log.warning("could not release the lease on %s (%s); it expires by itself", what, exc)
