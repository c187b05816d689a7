"""Ready schwab-py and Schwabdev 4 clients on a ``TokenReader``, each in one line, neither ever
refreshing: the refresher (or ``watch``) does that.

``reader.schwab_py_client()`` and ``reader.schwabdev_client()`` call these. The libraries are
optional (the ``schwab-py`` and ``schwabdev`` extras) and imported only here, when a client is
built, so neither ``import schwab_tokens`` nor a plain ``TokenReader`` loads them.

No app key or secret is asked for. Both libraries use them only to call Schwab's token endpoint
(to refresh, or to finish a login), which these clients never do; their constructors still want
a value, so each gets a stand-in of the shape it checks. A bot thus holds no app secret at all.

- schwab-py: the client is ``schwab.auth.client_from_access_functions`` on the reader's access
  functions without the refresh token (``access_functions(refresh=False)``): before each
  request it takes the reader's newer access token; when none comes it raises authlib's
  ``InvalidTokenError`` instead of refreshing.
- Schwabdev: its client reads its tokens from a SQLite database. ``exports.SchwabdevTokens``
  writes the reader's access view there, and the client (``ReaderClient``, made from
  ``schwabdev.Client`` when first needed) checks the reader before each request: a newer
  token is written to the database, where Schwabdev's own update finds it ("updated
  elsewhere") without calling the token endpoint; Schwabdev's update is never asked
  otherwise. A client is not built on a token so near its end that Schwabdev's constructor
  would refresh it: ``TemporaryFailure`` instead, naming the refresher.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, TemporaryFailure
from .exports import SchwabdevTokens

if TYPE_CHECKING:
    from .reader import TokenReader

#: What a missing library is: (module, its project on the package index, our extra, the range
#: pyproject.toml's extra pins).
SCHWAB_PY = ("schwab", "schwab-py", "schwab-py", "schwab-py>=1.4,<2")
SCHWABDEV = ("schwabdev", "Schwabdev", "schwabdev", "schwabdev>=4,<5")

#: Stand-ins for the app key and secret the constructors ask for (Schwabdev checks that both
#: lengths are even and together at least 32 characters); never sent anywhere.
UNUSED_APP_KEY = "schwab-tokens-reader-no-app-key!"
UNUSED_APP_SECRET = "schwab-tokens-reader-never-refreshes"
#: Schwabdev refreshes an access token less than 61 s before 30 minutes after its issue. A
#: token this close to its end is not handed to it (the refresher renews 15 minutes before).
SCHWABDEV_REFRESH_WITHIN = 61 + 29


def require_extra(module: str, project: str, extra: str, requirement: str) -> ModuleType:
    """The optional library ``module``, imported.

    Raises ``ConfigurationError`` naming the pip command that installs it when it is missing
    (or broken).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"{project} is not installed in this Python ({exc.name or module} cannot be "
            f"imported): pip install '{requirement}' (or, in a clone of schwab-tokens, "
            f"pip install '.[{extra}]')"
        ) from None


def schwab_py_client(
    reader: TokenReader, *, asyncio: bool = False, enforce_enums: bool = True
) -> Any:
    """A schwab-py client on ``reader`` (``AsyncClient`` with ``asyncio``) that never refreshes.

    Raises ``LoginRequired`` once the login is over, ``ConfigurationError`` without schwab-py.
    """
    schwab = require_extra(*SCHWAB_PY)
    read, write = reader.access_functions(refresh=False)
    return schwab.auth.client_from_access_functions(
        UNUSED_APP_KEY, UNUSED_APP_SECRET, read, write, asyncio=asyncio, enforce_enums=enforce_enums
    )


def schwabdev_client(
    reader: TokenReader,
    *,
    tokens_db: str | os.PathLike[str] | None = None,
    timeout: float = 10,
) -> Any:
    """A ``schwabdev.Client`` on ``reader``, that never refreshes.

    ``tokens_db``: the database it reads, which this client rewrites (so never the one of a
    Schwabdev login of yours); default, a new private folder of the system's temporary folder
    (``/tmp`` in Lambda), removed with the client. Raises ``LoginRequired`` once the login is
    over, ``TemporaryFailure`` when the stored access token is too near its end (the refresher
    is not running), ``ConfigurationError`` without Schwabdev or for an unusable path.
    """
    require_extra(*SCHWABDEV)
    folder = None
    if tokens_db is None:
        folder = tempfile.mkdtemp(prefix="schwab-tokens-schwabdev-")  # 0700
        tokens_db = Path(folder) / "tokens.db"
    try:
        tokens = SchwabdevTokens(reader, tokens_db)
        issued = _handover(reader)
        tokens.sync()
        client = _reader_client_class()(
            tokens,
            issued,
            UNUSED_APP_KEY,
            UNUSED_APP_SECRET,
            tokens_db=tokens.path,
            call_on_auth=tokens.call_on_auth,
            timeout=timeout,
        )
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if folder is not None:
        weakref.finalize(client, shutil.rmtree, folder, ignore_errors=True)
    return client


def _handover(reader: TokenReader) -> int:
    """The issue time of the reader's access token (whole seconds, as Schwabdev's database
    keeps it), when it is far enough from its end that a new Schwabdev client would not try to
    refresh it (its constructor checks).

    ``LoginRequired`` once the login is over; ``TemporaryFailure`` when the token is that near
    its end, which means nothing is refreshing it."""
    reader.access_token()  # LoginRequired, or TemporaryFailure once expired
    held = reader.token()
    left = held.access_seconds_left(reader.clock())
    if left <= SCHWABDEV_REFRESH_WITHIN:
        raise TemporaryFailure(
            f"the access token in {reader.store.url} ends in {max(left, 0):.0f} s and no newer "
            "one is stored: is the refresher running? (`schwab-tokens status` tells). Schwabdev "
            "would try to refresh it itself."
        )
    return int(held.issued_at)


@functools.cache
def _reader_client_class() -> type:
    """``schwabdev.Client`` taking its tokens from a reader (made once, when Schwabdev is
    there: it is an extra, not a dependency)."""
    import schwabdev

    class ReaderClient(schwabdev.Client):  # type: ignore[misc]
        """A ``schwabdev.Client`` whose tokens come from a ``TokenReader``, never from
        Schwab's token endpoint."""

        def __init__(self, tokens: SchwabdevTokens, issued: int, *args: Any, **kwargs: Any) -> None:
            self.reader_tokens = tokens
            #: The issue time of the newest token Schwabdev was given in its database.
            self.handed_over = issued
            super().__init__(*args, **kwargs)

        def update_tokens(
            self, force_access_token: bool = False, force_refresh_token: bool = False
        ) -> bool:
            """Before each request: take the reader's newer access token, if there is one.

            Raises ``LoginRequired`` or ``TemporaryFailure`` as ``TokenReader.access_token``
            does. Schwabdev's own update is asked only when there is a newer token to take: on
            its own token it would refresh near the end."""
            del force_access_token, force_refresh_token  # refreshing is the refresher's
            reader = self.reader_tokens.reader
            if reader.access_token() == self.tokens.access_token:
                return False
            issued = int(reader.token().issued_at)
            if issued <= self.handed_over:
                # Schwabdev takes a token from its database only if it was issued in a later
                # second than its own; otherwise it would call the token endpoint. Its own is
                # still valid: the next newer token is taken instead.
                return False
            self.reader_tokens.sync()
            self.handed_over = issued
            # Schwabdev re-reads its database, finds the newer token and takes it.
            return bool(super().update_tokens(force_access_token=True))

    return ReaderClient
