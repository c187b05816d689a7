"""``TokenReader``: the consumer's one-liner, with a warm in-memory cache, schwab-py hooks and
ready schwab-py and Schwabdev clients (``clients.py``, the optional extras).

It reads either an access view (``TOKEN_ACCESS_URL``: the access token and its expiry, no
refresh token; what consumers should hold) or a whole token document (``TOKEN_STORE_URL``: for
long-running bots that refresh through schwab-py's hooks under the lease).

The cache is re-read only when the cached access token comes within ``reread_margin`` of
expiry (or the login reaches its 7 days), so a warm Lambda makes no AWS call per invocation.
Once a writer has found the login over (the view's ``login_required``, or the login past its 7
days), every read raises ``LoginRequired`` naming the login that fixes it, until a new login
is stored. That margin exceeds schwab-py's 300 s
refresh leeway: a client built from ``access_functions()`` never starts with a token it would
refresh itself. (The refresher's own ``refresh_margin``, 900 s, is larger still: the stored
token is renewed well before readers would re-read it.) This module imports no HTTP client and
no powertools: it is on every consumer's cold start.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping

# The default clock, the builtin itself: access_token() is called on every API request a bot
# makes, and calls it once.
from time import time as _now
from typing import Any

from .access import AccessView
from .errors import (
    AccessDenied,
    LoginRequired,
    SchwabTokensError,
    TemporaryFailure,
    UsageError,
    WriteConflict,
)
from .settings import Settings
from .stores import TokenStore, View, source_from_url
from .timefmt import minute
from .token import Token

log = logging.getLogger(__name__)

#: schwab-py refreshes by itself below 300 s; re-reading a minute before that leaves slack.
DEFAULT_REREAD_MARGIN = 360.0
#: While the store itself holds a nearly-expired token (refresher late), re-read at most this often.
MIN_REREAD_SECONDS = 2.0

ReadFunc = Callable[[], dict[str, Any]]
WriteFunc = Callable[..., None]
#: What a reader holds: a whole token document, or an access view (both answer the same
#: questions: the access token, its expiry, the login's end, a fingerprint).
Held = Token | AccessView


class TokenReader:
    """Read the token from a store or its access view, cached in memory.

    ``TokenReader.from_env()`` reads ``TOKEN_ACCESS_URL`` (the access view), else
    ``TOKEN_STORE_URL``; ``access_token()`` answers from memory while the cached access token
    has more than ``reread_margin`` seconds left (default 360), then re-reads.
    ``access_functions()`` gives the ``(read, write)`` pair for
    ``schwab.auth.client_from_access_functions``. Thread safe; build one per process (at module
    level in a Lambda) so warm invocations share its cache.
    """

    def __init__(
        self,
        store: str | TokenStore | View,
        *,
        reread_margin: float = DEFAULT_REREAD_MARGIN,
        min_reread: float = MIN_REREAD_SECONDS,
        settings: Settings | None = None,
        clock: Callable[[], float] = _now,
    ) -> None:
        self.store = source_from_url(store, settings) if isinstance(store, str) else store
        self.reread_margin = reread_margin
        self.min_reread = min_reread
        #: Epoch seconds now (tests age a token with a fake clock instead of sleeping).
        self.clock = clock
        self._lock = threading.Lock()
        self._token: Held | None = None
        self._version: str | None = None
        self._access = ""
        self._over: LoginRequired | None = None  # the login was found over
        self._stale_at = 0.0  # epoch after which the cache must be re-read
        self._over_until = 0.0  # while the login is over: epoch of the next look for a new one

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> TokenReader:
        """A reader of ``TOKEN_ACCESS_URL`` (the access view), else of ``TOKEN_STORE_URL``.

        ``env`` defaults to the process's environment. Raises ``UsageError`` when neither is
        set or the URL is not a store's.
        """
        settings = Settings.from_env(env)
        url = settings.access_url or settings.store_url
        if not url:
            raise UsageError(
                "TOKEN_ACCESS_URL is not set: give the consumer the stack's AccessTokenUrl output "
                "(or TOKEN_STORE_URL, the StoreUrl output, for a bot that refreshes itself)"
            )
        return cls(url, settings=settings, **options)

    # -- reading -----------------------------------------------------------------------------
    def access_token(self) -> str:
        """The current access token: from memory while it has more than ``reread_margin`` left.

        Raises ``LoginRequired`` once the login is over, ``TemporaryFailure`` if the stored
        access token has expired (the refresher is not running), and as ``token`` does."""
        if self.clock() < self._stale_at:
            return self._access
        token = self.token()
        left = token.access_seconds_left(self.clock())
        if left <= 0:
            raise TemporaryFailure(
                f"the access token in {self.store.url} expired {-left:.0f} s ago: is the "
                "refresher running? (`schwab-tokens status` tells)"
            )
        return self._access

    def token(self) -> Held:
        """What was read: a ``Token`` or an ``AccessView`` (expiries, fingerprint).

        Re-read like ``access_token``. Raises ``LoginRequired`` once the login is over, and
        what the store's read raises (``InvalidTokenDocument``, ``AccessDenied``,
        ``TemporaryFailure``).
        """
        if self.clock() < self._stale_at and self._token is not None:
            return self._token
        with self._lock:
            now = self.clock()
            waiting = self._over is not None and now < self._over_until
            if self._token is None or (now >= self._stale_at and not waiting):
                self._load()
            if self._over is not None:
                raise self._over
            assert self._token is not None
            return self._token

    def document(self) -> dict[str, Any]:
        """The schwab-py token document, a fresh copy (without a refresh token from a view).

        Raises as ``token`` does.
        """
        return self.token().schwab_py_document()

    def _load(self) -> None:
        raw, version, _ = self.store.read_raw()
        held: Held
        if isinstance(self.store, View):
            # A view's place holding a whole document (refresh token included) is refused.
            held = AccessView.parse(raw, source=self.store.url)
        else:
            held = Token.parse(raw, source=self.store.url)
        self._remember(held, version)

    def _remember(self, token: Held, version: str) -> None:
        self._token, self._version, self._access = token, version, token.access_token
        now = self.clock()
        self._over = self._login_over(token, now)
        if self._over is not None:
            # No fast path serves the old token; the store is looked at again now and then, so
            # a new login makes the reader work again by itself.
            self._stale_at = 0.0
            self._over_until = now + self.min_reread
            return
        # A token already inside the margin (refresher late) is re-read, but not on every call,
        # and the cache never outlives the login.
        fresh_until = min(token.access_expires_at - self.reread_margin, token.refresh_expires_at)
        self._stale_at = max(fresh_until, now + self.min_reread)

    def _login_over(self, held: Held, now: float) -> LoginRequired | None:
        """Why the login behind ``held`` is over, if it is: a writer marked the view (Schwab
        refused the refresh token), or its 7 days have passed."""
        if held.refresh_seconds_left(now) <= 0:
            why = f"it ended at {minute(held.refresh_expires_at)}, 7 days after the login"
        elif _marked_over(self.store, held):
            why = (
                "Schwab refused its refresh token (another login to this app replaced it, or it "
                "was revoked)"
            )
        else:
            return None
        where = f"--store {_document_of(self.store)}"
        return LoginRequired(
            f"the Schwab login behind {self.store.url} is over: {why}. No new access token "
            f"comes until someone logs in again: run `schwab-tokens login {where}`"
        )

    def invalidate(self) -> None:
        """Forget the cache: the next call reads the store."""
        self._stale_at = self._over_until = 0.0

    # -- schwab-py ---------------------------------------------------------------------------
    def access_functions(self, *, refresh: bool = True) -> tuple[ReadFunc, WriteFunc]:
        """``(read, write)`` for ``schwab.auth.client_from_access_functions``.

        The client takes each newer access token from the store whenever its own nears expiry,
        so it follows the refresher instead of refreshing. From an access view, or with
        ``refresh=False``, it holds no refresh token and can never refresh (once the token runs
        out, authlib raises ``InvalidTokenError``). From a whole document, schwab-py refreshes
        only when nothing else did; ``write`` then stores the new document only if the store
        still holds the version this reader read (a lost race or a denied write is no error:
        the other writer's token is read instead). Both raise as ``token`` does.
        """

        def read() -> dict[str, Any]:
            held = self.token()
            document = (held if refresh else AccessView.of(held)).schwab_py_document()
            document["token"] = _live_token(self, document["token"], refresh=refresh)
            return document

        if not refresh or isinstance(self.token(), AccessView):
            return read, _view_write

        def write(document: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
            del args, kwargs  # authlib passes refresh_token=/access_token=; the document has them
            token = Token.from_client(dict(document))
            store = self.store
            if not isinstance(store, TokenStore):
                return
            with self._lock:
                if self._token is None:
                    self._load()
                try:
                    version = store.write(token, self._version)
                except WriteConflict:
                    self._load()
                    return
                except AccessDenied:
                    log.info("this reader may not write %s; using the refresher's token", store.url)
                    self._stale_at = 0.0
                    return
                self._remember(token, version)
            try:
                store.sync_view(token)
            except SchwabTokensError as exc:
                log.warning("the access view of %s could not be written (%s)", store.url, exc)

        return read, write

    # -- ready clients (the extras; docs/reading-the-token.md) -------------------------------
    def schwab_py_client(self, *, asyncio: bool = False, enforce_enums: bool = True) -> Any:
        """A schwab-py client that takes each newer access token from this reader.

        ``schwab.client.Client``, or ``AsyncClient`` with ``asyncio``; it never refreshes by
        itself. Raises ``ConfigurationError`` naming the pip command without schwab-py, and
        ``LoginRequired`` once the login is over (``clients.schwab_py_client``).
        """
        from .clients import schwab_py_client

        return schwab_py_client(self, asyncio=asyncio, enforce_enums=enforce_enums)

    def schwabdev_client(
        self, *, tokens_db: str | os.PathLike[str] | None = None, timeout: float = 10
    ) -> Any:
        """A ``schwabdev.Client`` that takes each newer access token from this reader.

        It reads them through its tokens database and never refreshes by itself. Raises
        ``ConfigurationError`` naming the pip command without Schwabdev, ``LoginRequired`` once
        the login is over and ``TemporaryFailure`` for a token too near its end
        (``clients.schwabdev_client``).
        """
        from .clients import schwabdev_client

        return schwabdev_client(self, tokens_db=tokens_db, timeout=timeout)


def _document_of(source: TokenStore | View) -> str:
    """The URL of the document behind ``source``: its own, or that of the document a view
    mirrors (an SSM view does not know it: the rule of ``stores.document_url`` names it)."""
    mirrored = getattr(source, "store_url", None)
    if mirrored is None:
        return source.url  # a document store
    from .stores import document_url

    return str(mirrored) or document_url(source.url)


def _marked_over(source: TokenStore | View, held: Held) -> bool:
    """Whether the view says a writer found ``held``'s login over. A reader of the whole
    document asks the view beside it (whose ``login_required`` every writer keeps); a view
    that cannot be read says nothing."""
    if isinstance(held, AccessView):
        return held.login_required
    if not isinstance(source, TokenStore):
        return False
    try:
        view, _ = source.view.current()
    except SchwabTokensError:
        return False
    return (
        view is not None
        and view.login_required
        and view.order() == AccessView.from_token(held).order()
    )


def _view_write(document: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
    """The write hook on an access view: unreachable with the live token (it has no refresh
    token), and there is nothing to store anyway."""
    del document, args, kwargs
    log.warning("schwab-py refreshed a token read from an access view; not stored")


def _live_token(reader: TokenReader, fields: dict[str, Any], *, refresh: bool) -> dict[str, Any]:
    """The token schwab-py's session holds, kept current from the reader (without
    ``refresh``, from its access view: never a refresh token).

    authlib asks ``token.is_expired(leeway)`` before every request and keeps a subclass of its
    ``OAuth2Token`` as it is; this one first takes the reader's current access token (in place:
    the session's auth reads the same dict), so the session never sees an expiring token while
    the store holds a fresh one. From a view it never refreshes (there is no refresh token to
    use); from a whole document, only if the store's own token is expiring too.
    """
    live_token = _live_token_class()
    if live_token is None:  # no schwab-py here: a plain document is all anyone can use
        return fields
    live: dict[str, Any] = live_token(fields)
    live.reader = reader  # type: ignore[attr-defined]
    live.refresh = refresh  # type: ignore[attr-defined]
    return live


@functools.cache
def _live_token_class() -> type | None:
    """authlib's ``OAuth2Token`` kept current from a reader (made once, when schwab-py is
    there: authlib is its dependency, not ours)."""
    try:
        from authlib.oauth2.rfc6749 import OAuth2Token
    except ImportError:
        return None

    class LiveToken(OAuth2Token):  # type: ignore[misc]
        reader: TokenReader
        refresh: bool

        def is_expired(self, leeway: int = 60) -> bool:
            current = self.reader.token()
            if current.access_token != self.get("access_token"):
                taken = current if self.refresh else AccessView.of(current)
                self.update(taken.schwab_py_document()["token"])
            return bool(current.access_seconds_left(self.reader.clock()) < leeway)

    return LiveToken
