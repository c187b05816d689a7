"""The token a store holds: readable, the access token's and the login's time left, and
whether a run found the login over. These checks need only the store (a file works without
AWS)."""

from __future__ import annotations

from ..errors import ExitCode, InvalidTokenDocument, LoginRequired, SchwabTokensError
from ..policy import REPLACED_IF_LEFT_SECONDS
from ..stores import TokenStore
from ..timefmt import duration, when
from ..token import Token
from .report import Check, Fixes, Status, could_not, fail, ok

#: Below this the login is due soon: a warning (the refresher's first e-mail goes out then too).
LOGIN_DUE_SECONDS = 24 * 3600


def read_token(store: TokenStore, fixes: Fixes) -> tuple[Check, Token | None]:
    """The "token" line, and the token when it could be read."""
    try:
        token = Token.parse(store.read_raw().raw, source=store.url)
    except LoginRequired:
        login = fixes.login(store.url)
        return fail("token", f"no token at {store.url}", login, ExitCode.LOGIN_REQUIRED), None
    except InvalidTokenDocument as exc:
        return fail("token", str(exc), fixes.login(store.url)), None
    except SchwabTokensError as exc:
        return could_not("token", exc), None
    return ok("token", f"{store.url} is readable (fingerprint {token.fingerprint})"), token


def access_token(store: TokenStore, token: Token, now: float, fixes: Fixes, over: bool) -> Check:
    """Whether consumers get a working access token now."""
    left = token.access_seconds_left(now)
    if left > 0:
        return ok("access token", f"expires in {duration(left)} ({when(token.access_expires_at)})")
    # A run that found the login over (``over``) is as final as its 7 days: `refresh` could
    # only fail.
    dead = token.refresh_seconds_left(now) <= 0 or over
    return fail(
        "access token",
        f"expired {duration(-left)} ago, so consumers get no working token",
        fixes.login(store.url) if dead else fixes.refresh(store.url),
        ExitCode.LOGIN_REQUIRED if dead else ExitCode.CONFIGURATION,
    )


def login(store: TokenStore, token: Token, now: float, fixes: Fixes, over: bool) -> Check:
    """How long the login (the refresh token) has left, and whether a run found it over."""
    left = token.refresh_seconds_left(now)
    ends = when(token.refresh_expires_at)
    if left > 0 and over:
        why = (
            "although it had days left: another login to this app replaced it (Schwab keeps "
            "one login per app)"
            if left > REPLACED_IF_LEFT_SECONDS
            else "before its end"
        )
        return fail(
            "login",
            f"a refresh found this login over: Schwab refused its refresh token {why}",
            fixes.login(store.url),
            ExitCode.LOGIN_REQUIRED,
        )
    if left <= 0:
        return fail(
            "login",
            f"the refresh token died {duration(-left)} ago ({ends}, 7 days after the login)",
            fixes.login(store.url),
            ExitCode.LOGIN_REQUIRED,
        )
    if left < LOGIN_DUE_SECONDS:
        return Check(
            "login",
            Status.WARN,
            f"the refresh token dies in {duration(left)} ({ends})",
            f"log in again before then: {fixes.login(store.url)}",
        )
    return ok("login", f"the refresh token lasts {duration(left)} more (until {ends})")
