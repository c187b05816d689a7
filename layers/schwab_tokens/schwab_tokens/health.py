"""What ``schwab-tokens status`` reports, as data (the CLI prints it; tests and scripts read it)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .errors import ExitCode, SchwabTokensError
from .manifest import Target
from .notes import found_over
from .policy import REPLACED_IF_LEFT_SECONDS
from .settings import Settings
from .stores import TokenStore, store_from_url
from .token import Token

#: Below this the refresh token is "about to die": the alarm threshold, and ``healthy`` turns false.
REFRESH_WARNING_SECONDS = 24 * 3600


def describe(store: TokenStore, now: float | None = None) -> dict[str, Any]:
    """What ``schwab-tokens status --json`` prints for one store.

    The row holds where consumers read (``access_url``), the login time, both expiries and the
    seconds left, the last write, a fingerprint, ``login_required`` (the login is over) and
    ``healthy`` (a refresh would work and more than a day is left before a login is due).
    Raises what ``store.read()`` raises: ``LoginRequired`` when there is no token,
    ``InvalidTokenDocument``, ``AccessDenied``, ``TemporaryFailure`` (also when the notes,
    which may say the login is over, could not be read just now).
    """
    now = time.time() if now is None else now
    stored = store.read()
    token = stored.token
    access_left = token.access_seconds_left(now)
    refresh_left = token.refresh_seconds_left(now)
    refused = found_over(store, token)
    over = refused or refresh_left <= 0
    return {
        "store": store.url,
        "access_url": store.view.url,
        "creation_timestamp": token.creation_timestamp,
        "age_seconds": round(now - token.creation_timestamp),
        "last_refresh": stored.written_at,
        "access_expires_at": round(token.access_expires_at),
        "refresh_expires_at": round(token.refresh_expires_at),
        "access_seconds_left": round(access_left),
        "refresh_seconds_left": round(refresh_left),
        "fingerprint": token.fingerprint,
        "login_required": over,
        "login_required_reason": _reason(token, now, refused) if over else None,
        # Healthy: a refresh would work and there is a day's notice left before a login is due.
        "healthy": not over and refresh_left > REFRESH_WARNING_SECONDS,
    }


def _reason(token: Token, now: float, refused: bool) -> str:
    """``expired`` (its 7 days are over), ``replaced`` (refused with more than an hour left:
    the refresh policy's rule for another login to the app) or ``refused``."""
    left = token.refresh_seconds_left(now)
    if left <= 0:
        return "expired"
    return "replaced" if refused and left > REPLACED_IF_LEFT_SECONDS else "refused"


def describe_all(
    targets: Sequence[Target], settings: Settings, now: float | None = None
) -> list[dict[str, Any]]:
    """One row per token of a manifest; a token that cannot be read gets its error instead."""
    rows: list[dict[str, Any]] = []
    for target in targets:
        try:
            row = describe(store_from_url(target.url, settings), now)
        except SchwabTokensError as exc:
            rows.append({"token": target.name, **failure_row(target.url, exc, settings)})
            continue
        code = ExitCode.LOGIN_REQUIRED if row["login_required"] else ExitCode.OK
        rows.append({"token": target.name, **row, "exit_code": int(code)})
    return rows


def failure_row(url: str, exc: SchwabTokensError, settings: Settings) -> dict[str, Any]:
    """What ``status --json`` prints for a store it cannot describe (no token, corrupt, denied)."""
    try:
        view: str | None = store_from_url(url, settings).view.url
    except SchwabTokensError:
        view = None
    return {
        "store": url,
        "access_url": view,
        "outcome": str(exc.outcome),
        "error": str(exc),
        "healthy": False,
        "exit_code": int(exc.exit_code),
    }
