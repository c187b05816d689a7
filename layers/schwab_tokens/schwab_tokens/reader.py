"""``TokenReader``: the consumer's one-liner, with a warm in-memory cache and schwab-py hooks.

The cache is re-read only when the cached access token comes within ``margin`` of expiry, so a
warm Lambda makes no AWS call per invocation. The margin exceeds schwab-py's 300 s refresh
leeway: a client built from ``access_functions()`` never starts with a token it would refresh
itself. This module imports no HTTP client and no powertools: it is on every consumer's cold
start.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .errors import TemporaryFailure, UsageError, WriteConflict
from .stores import TokenStore, store_from_url
from .token import Token

#: schwab-py refreshes by itself below 300 s; re-reading a minute before that leaves slack.
DEFAULT_MARGIN_SECONDS = 360.0
#: While the store itself holds a nearly-expired token (refresher late), re-read at most this often.
MIN_REREAD_SECONDS = 2.0

ReadFunc = Callable[[], dict[str, Any]]
WriteFunc = Callable[..., None]


class TokenReader:
    def __init__(
        self,
        store: str | TokenStore,
        *,
        margin: float = DEFAULT_MARGIN_SECONDS,
        min_reread: float = MIN_REREAD_SECONDS,
    ) -> None:
        self.store = store_from_url(store) if isinstance(store, str) else store
        self.margin = margin
        self.min_reread = min_reread
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._version: str | None = None
        self._access = ""
        self._stale_at = 0.0  # epoch after which the cache must be re-read

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: float) -> TokenReader:
        """The store named by ``TOKEN_STORE_URL``."""
        env = os.environ if env is None else env
        url = env.get("TOKEN_STORE_URL")
        if not url:
            raise UsageError(
                "TOKEN_STORE_URL is not set: give the consumer the store URL the refresher "
                "uses (the stack's StoreUrl output)"
            )
        return cls(url, **options)

    # -- reading -----------------------------------------------------------------------------
    def access_token(self) -> str:
        """The current access token: from memory while it has more than ``margin`` left."""
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
        self._stale_at = max(token.access_expires_at - self.margin, now + self.min_reread)

    def invalidate(self) -> None:
        """Forget the cache: the next call reads the store."""
        self._stale_at = 0.0

    # -- schwab-py ---------------------------------------------------------------------------
    def access_functions(self) -> tuple[ReadFunc, WriteFunc]:
        """``(read, write)`` for ``schwab.auth.client_from_access_functions``.

        The refresher owns refreshing; if schwab-py refreshes anyway, ``write`` stores the new
        document only if the store still holds the version this reader read. A conflict means
        another writer refreshed first: theirs is kept and re-read, never overwritten.
        """

        def read() -> dict[str, Any]:
            return self.document()

        def write(document: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
            del args, kwargs  # authlib passes refresh_token=/access_token=; the document has them
            token = Token.from_dict(dict(document), source="the token schwab-py wrote")
            with self._lock:
                if self._token is None:
                    self._load()
                try:
                    version = self.store.write(token, self._version)
                except WriteConflict:
                    self._load()
                    return
                self._remember(token, version)

        return read, write
