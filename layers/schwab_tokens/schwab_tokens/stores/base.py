"""The seam between the refresh policy and where the token lives.

Every backend offers the same three things: read the document with an opaque version, write
conditionally on the version read, and hold a short single-flight lease around a refresh. Stores
know nothing of OAuth; parsing is shared here so every backend reports a bad document alike.
"""

from __future__ import annotations

import abc
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from ..errors import LeaseBusy, SchwabTokensError
from ..token import Token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """A document as read, with the version a conditional write must name."""

    token: Token
    version: str
    #: When the store last wrote it (epoch seconds), from store metadata, if known.
    written_at: float | None = None


class TokenStore(abc.ABC):
    """One token document in one place (a file, an S3 object, a secret)."""

    url: str

    def read(self) -> Stored:
        raw, version, written_at = self.read_raw()
        return Stored(Token.parse(raw, source=self.url), version, written_at)

    @abc.abstractmethod
    def read_raw(self) -> tuple[bytes, str, float | None]:
        """The stored bytes, their version and write time; ``LoginRequired`` if there are none."""

    @abc.abstractmethod
    def version(self) -> str | None:
        """The current version, or None when nothing is stored (the document is not parsed)."""

    @abc.abstractmethod
    def write(self, token: Token, expected_version: str | None) -> str:
        """Store ``token`` only if the current version is still ``expected_version`` (None: no
        document yet); return the new version, or raise ``WriteConflict``."""

    @abc.abstractmethod
    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> AbstractContextManager[bool]:
        """Hold the single-flight lease: at most one holder per document across all writers.

        Waits up to ``wait`` seconds for a busy lease, then raises ``LeaseBusy``. A holder that
        dies loses the lease within ``ttl`` seconds. While waiting, ``abandon_if`` is asked
        between tries; when it answers true the context is entered without the lease (it yields
        False), so a loser stops queueing once the holder's work makes its own unnecessary.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


@contextmanager
def polled_lease(
    try_acquire: Callable[[], bool],
    release: Callable[[], None],
    wait: float,
    what: str,
    abandon_if: Callable[[], bool] | None = None,
) -> Iterator[bool]:
    """A lease taken by polling ``try_acquire`` with jittered sleeps until ``wait`` runs out.

    Shared by the backends whose lease is a remote record (S3 object, secret label, lock file).
    Yields True when held, False when ``abandon_if`` said waiting is no longer needed.
    """
    deadline = time.monotonic() + wait
    delay = 0.05
    while not try_acquire():
        if abandon_if is not None and abandon_if():
            yield False
            return
        if time.monotonic() >= deadline:
            raise LeaseBusy(
                f"another writer is refreshing {what} and did not finish within {wait:g} s; "
                "the stored token is untouched, try again"
            )
        time.sleep(min(delay * (0.5 + random.random()), max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)
    try:
        yield True
    finally:
        try:
            release()
        except SchwabTokensError as exc:
            # The work under the lease is done (or failed on its own); a lease that cannot be
            # released just lives out its ttl, so this must not replace the body's outcome.
            log.warning("could not release the lease on %s (%s); it expires by itself", what, exc)
