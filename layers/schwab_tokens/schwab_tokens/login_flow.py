"""A login, wherever it happens: callback URLs, exchanging the code, storing the new login.

Shared by the CLI (``schwab-tokens login``, with its listener in ``listener.py``) and the hosted
login (``hosted_login.py``). A login stores the new token (replacing an older login) and notes
beside it which Schwab login it is (a hash of its account numbers), so that a later login from a
phone can be refused when it is someone else's. No AWS here.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urlsplit

from .errors import LoginRequired, SchwabTokensError, UsageError, WriteConflict
from .notes import ACCOUNT, LOGIN
from .oauth import SchwabOAuth, parse_callback
from .stores import TokenStore
from .timefmt import minute
from .token import Token

log = logging.getLogger(__name__)

DEFAULT_CALLBACK_URL = "https://127.0.0.1:8182"
#: A login replaces whatever is stored; a refresher writing in between only costs a retry.
WRITE_ATTEMPTS = 3


def check_callback_url(url: str, *, listen: bool = True) -> str:
    """``url``, checked to be a callback this login can use.

    It is https always, and on 127.0.0.1 when this machine listens on it (Schwab and schwab-py
    both insist); any host when the returned address is pasted. Raises ``UsageError``.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UsageError(f"the callback URL must be an https:// URL (got {url!r})")
    if listen and parts.hostname != "127.0.0.1":
        raise UsageError(
            f"the callback URL's host must be 127.0.0.1 to listen on it (got {parts.hostname!r}); "
            "schwab-py refuses localhost, and it must match the app's callback registered with "
            "Schwab. For another callback (the hosted login's), use --paste"
        )
    return url


def complete_login(
    oauth: SchwabOAuth,
    store: TokenStore,
    link: str,
    state: str,
    callback_url: str,
    *,
    now: float | None = None,
) -> Token:
    """Exchange the code in ``link``, check the answer, and store the new login; return it.

    Raises ``UnusableLink`` or ``CallbackError`` for the link, ``InvalidTokenAnswer`` for
    Schwab's answer, what ``SchwabOAuth.exchange_code`` raises, and ``WriteConflict``.
    """
    code = parse_callback(link, state)
    token = Token.from_login(oauth.exchange_code(code, callback_url), now)
    return record_login(store, token, login_account(oauth, token))


def record_login(
    store: TokenStore, token: Token, account: str | None, *, replaces: int | None = None
) -> Token:
    """Store a new login's token, then note which Schwab login it is; return what was stored.

    ``replaces``: the login (``creation_timestamp``) this one may replace. Raises
    ``LoginRequired`` if the store holds another one by the time of the write, and
    ``WriteConflict`` if the store kept changing. Once the token is written, a failure to
    write the notes is logged, never raised.
    """
    if replaces is not None and token.creation_timestamp <= replaces:
        # A new login is always later than the one it replaces (whatever the clocks said), so
        # a ticket naming the old one never matches again and the refresher never prefers it.
        token = replace(token, creation_timestamp=replaces + 1)
    for _ in range(WRITE_ATTEMPTS):
        if replaces is None:
            version = store.version()
        else:
            current = store.read()
            if current.token.creation_timestamp != replaces:
                raise LoginRequired(f"{store.url} holds a newer login; it was not replaced")
            version = current.version
        try:
            store.write(token, version)
            break
        except WriteConflict:
            continue
    else:
        raise WriteConflict(f"{store.url} kept changing while the login was being stored")
    note_login(store, token, account)
    return token


def note_login(
    store: TokenStore, token: Token, account: str | None, *, keep_notes: bool = False
) -> None:
    """Write the access view of a newly stored login, then note which Schwab login it is.

    With ``keep_notes`` (the same login stored again), the notes stay as they are. The login
    has happened by then: a failure is logged, never raised (the next refresh writes the view;
    a phone login asks for the CLI once).
    """
    try:
        store.sync_view(token)
    except SchwabTokensError as exc:
        log.warning(
            "the login is stored, but the consumers' access view beside %s could not be "
            "written (%s); the next refresh writes it",
            store.url,
            exc,
        )
    if keep_notes:
        return
    problem = "it kept changing"
    for _ in range(WRITE_ATTEMPTS):
        try:
            _notes, version = store.read_notes()
            store.write_notes({LOGIN: token.creation_timestamp, ACCOUNT: account}, version)
            return
        except WriteConflict:
            continue
        except SchwabTokensError as exc:
            problem = str(exc)
            break
    log.warning(
        "the login is stored, but which Schwab login it is could not be noted beside %s (%s); "
        "a phone login will ask for the CLI once",
        store.url,
        problem,
    )


def login_account(oauth: SchwabOAuth, token: Token) -> str | None:
    """Which Schwab login this is (an account fingerprint), or None if Schwab cannot say.

    A failure of Schwab's account route is logged, never raised: it must not cost the user
    the login they just did.
    """
    try:
        return oauth.account_fingerprint(token.access_token)
    except SchwabTokensError as exc:
        log.warning(
            "could not read the login's accounts (%s); a phone login will ask for the CLI", exc
        )
        return None


def login_time(token: Token) -> str:
    """The login's time, to the minute, as the CLI prints it."""
    return minute(token.creation_timestamp)
