"""``TokenReader``: the consumer's one-liner, with a warm in-memory cache and schwab-py hooks.

The cache is re-read only when the cached access token comes within ``reread_margin`` of
expiry, so a warm Lambda makes no AWS call per invocation. That margin exceeds schwab-py's 300 s
refresh leeway: a client built from ``access_functions()`` never starts with a token it would
refresh itself. (The refresher's own ``refresh_margin``, 900 s, is larger still: the stored
token is renewed well before readers would re-read it.) This module imports no HTTP client and
no powertools: it is on every consumer's cold start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .errors import AccessDenied, TemporaryFailure, UsageError, WriteConflict
from .settings import Settings
from .stores import TokenStore, store_from_url
from .token import Token

log = logging.getLogger(__name__)

#: schwab-py refreshes by itself below 300 s; re-reading a minute before that leaves slack.
DEFAULT_REREAD_MARGIN = 360.0
#: While the store itself holds a nearly-expired token (refresher late), re-read at most this often.
MIN_REREAD_SECONDS = 2.0

ReadFunc = Callable[[], dict[str, Any]]
WriteFunc = Callable[..., None]


class TokenReader:
    """Read the token from a store, cached in memory: the consumer's side of schwab-tokens.

    ``TokenReader.from_env()`` reads ``TOKEN_STORE_URL``; ``access_token()`` answers from memory
    while the cached access token has more than ``reread_margin`` seconds left (default 360),
    then re-reads the store. ``access_functions()`` gives the ``(read, write)`` pair for
    ``schwab.auth.client_from_access_functions``. Thread safe; build one per process (at module
    level in a Lambda) so warm invocations share its cache.
    """

    def __init__(
        self,
        store: str | TokenStore,
        *,
        reread_margin: float = DEFAULT_REREAD_MARGIN,
        min_reread: float = MIN_REREAD_SECONDS,
        settings: Settings | None = None,
    ) -> None:
        self.store = store_from_url(store, settings) if isinstance(store, str) else store
        self.reread_margin = reread_margin
        self.min_reread = min_reread
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._version: str | None = None
        self._access = ""
        self._stale_at = 0.0  # epoch after which the cache must be re-read

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: float) -> TokenReader:
        """The store named by ``TOKEN_STORE_URL`` (``env`` defaults to the process's)."""
        settings = Settings.from_env(env)
        if not settings.store_url:
            raise UsageError(
                "TOKEN_STORE_URL is not set: give the consumer the store URL the refresher "
                "uses (the stack's StoreUrl output)"
            )
        return cls(settings.store_url, settings=settings, **options)

    # -- reading -----------------------------------------------------------------------------
    def access_token(self) -> str:
        """The current access token: from memory while it has more than ``reread_margin`` left.

        ``TemporaryFailure`` if the stored one has expired (the refresher is not running)."""
        if time.time() < self._stale_at:
            return self._access
        token = self.token()
        if token.access_seconds_left() <= 0:
            raise TemporaryFailure(
                f"the access token in {self.store.url} expired "
                f"{-token.access_seconds_left():.0f} s ago: is the refresher running? "
                "(`schwab-tokens status` tells)"
            )
        return self._access

    def token(self) -> Token:
        """The cached ``Token`` (expiries, fingerprint), re-read like ``access_token``."""
        if time.time() < self._stale_at and self._token is not None:
            return self._token
        with self._lock:
            if time.time() >= self._stale_at or self._token is None:
                self._load()
            assert self._token is not None
            return self._token

    def document(self) -> dict[str, Any]:
        """The schwab-py token document (a fresh copy; changing it changes nothing stored)."""
        return self.token().to_dict()

    def _load(self) -> None:
        stored = self.store.read()
        self._remember(stored.token, stored.version)

    def _remember(self, token: Token, version: str) -> None:
        self._token, self._version, self._access = token, version, token.access_token
        now = time.time()
        # A token already inside the margin (refresher late) is re-read, but not on every call.
        self._stale_at = max(token.access_expires_at - self.reread_margin, now + self.min_reread)

    def invalidate(self) -> None:
        """Forget the cache: the next call reads the store."""
        self._stale_at = 0.0

    # -- schwab-py ---------------------------------------------------------------------------
    def access_functions(self) -> tuple[ReadFunc, WriteFunc]:
        """``(read, write)`` for ``schwab.auth.client_from_access_functions``.

        The refresher owns refreshing; if schwab-py refreshes anyway, ``write`` stores the new
        document only if the store still holds the version this reader read. A conflict means
        another writer refreshed first: theirs is kept and re-read, never overwritten. A
        read-only consumer (the stack's reader policy) is denied the write: the cache is then
        forgotten, so the next read takes the refresher's token, and nothing is raised.
        """

        def read() -> dict[str, Any]:
            return self.document()

        def write(document: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
            del args, kwargs  # authlib passes refresh_token=/access_token=; the document has them
            token = Token.from_client(dict(document))
            with self._lock:
                if self._token is None:
                    self._load()
                try:
                    version = self.store.write(token, self._version)
                except WriteConflict:
                    self._load()
                    return
                except AccessDenied:
                    log.info(
                        "this reader may not write %s; using the refresher's token", self.store.url
                    )
                    self._stale_at = 0.0
                    return
                self._remember(token, version)

        return read, write
