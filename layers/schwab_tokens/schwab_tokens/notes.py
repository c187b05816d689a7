"""The notes a store keeps beside its token: which login they are about, and what is known of it.

One small JSON object (at most ``stores.limits.MAX_NOTES_BYTES``), read and written with the same
compare-and-swap as the token (``TokenStore.read_notes`` / ``write_notes``). Its keys:

- ``login``: the ``creation_timestamp`` of the login the notes are about. Notes of another login
  say nothing about this one; a newer login's notes are never rewritten for an older one.
- ``account``: which Schwab accounts that login linked (``oauth.account_fingerprint``).
- ``over``: 1 once any run of the refresh policy (the refresher, ``refresh``, ``watch``) found the
  login over: Schwab refused its refresh token, or its 7 days ended. Removed only by a later run
  that refreshed the same login (the verdict was wrong). ``status``, ``doctor`` and, through the
  access view's ``login_required``, every reader say "login required" from then on.
- ``sent``: the last login notice sent (``expiring_24h``, ``expiring_2h``, ``login_required``).
- ``failing``: ``[since, sent]``: refreshes have failed since that time, and whether the
  "failing" notice went out.
- ``forced``: the refresher's mark of an invocation whose forced refresh is done.

The largest notes these keys can make stay under the limit (tests/unit/test_notes.py writes them
to every store). No AWS here.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import Outcome, SchwabTokensError, TemporaryFailure, WriteConflict
from .stores.base import TokenStore
from .token import Token

log = logging.getLogger(__name__)

LOGIN = "login"
ACCOUNT = "account"
OVER = "over"
SENT = "sent"
FAILING = "failing"
FORCED = "forced"
#: The pair of keys read as ``failing`` (``normalized``), and replaced by it on the next write.
_LEGACY_FAILING = ("failing_since", "failing_sent")
#: A notes update that keeps losing to other writers gives up after this many tries.
WRITE_ATTEMPTS = 3


def normalized(notes: dict[str, Any]) -> dict[str, Any]:
    """``notes`` with the pair ``failing_since``/``failing_sent`` turned into ``failing``.

    The two forms then never pile up side by side. Returns ``notes`` itself when it has
    neither. Pure.
    """
    if not any(key in notes for key in _LEGACY_FAILING):
        return notes
    new = {k: v for k, v in notes.items() if k not in _LEGACY_FAILING}
    since = notes.get("failing_since")
    if _is_time(since):
        new[FAILING] = [since, bool(notes.get("failing_sent"))]
    return new


def failing(notes: dict[str, Any]) -> tuple[float, bool] | None:
    """Since when refreshes have failed (epoch seconds) and whether that was said.

    None when they are not failing (or the time is no time). Pure.
    """
    noted = normalized(notes).get(FAILING)
    if isinstance(noted, list) and len(noted) == 2 and _is_time(noted[0]):
        return float(noted[0]), bool(noted[1])
    return None


def login_over(notes: dict[str, Any], token: Token) -> bool:
    """Whether a run found ``token``'s login over (notes about another login say nothing).

    Over: ``over``, or a ``login_required`` notice sent, noted for that login. Pure.
    """
    if notes.get(LOGIN) != token.creation_timestamp:
        return False
    return bool(notes.get(OVER)) or notes.get(SENT) == "login_required"


def found_over(store: TokenStore, token: Token) -> bool:
    """Whether a run (the refresher, ``refresh``, ``watch``) noted ``token``'s login over.

    Notes this identity may not read, or that are not notes, say nothing: a read-only identity
    may see the token but not the notes. Raises ``TemporaryFailure`` when they could not be
    read just now (throttled, a network fault): "healthy" would then be a guess.
    """
    try:
        notes, _ = store.read_notes()
    except TemporaryFailure:
        raise
    except SchwabTokensError:
        return False
    return login_over(notes, token)


def with_verdict(notes: dict[str, Any], token: Token, outcome: Outcome) -> dict[str, Any]:
    """The notes after a run on ``token`` ended in ``outcome``.

    ``over`` is set when it found the login over, removed when it refreshed that login;
    unchanged otherwise (a still-fresh token proves nothing about the login). Pure: returns
    ``notes`` itself when nothing changes.
    """
    notes = normalized(notes)
    noted = notes.get(LOGIN)
    if isinstance(noted, int | float) and noted > token.creation_timestamp:
        return notes  # a newer login's notes: nothing this run saw is news about it
    same = noted == token.creation_timestamp
    if outcome == Outcome.REAUTH_REQUIRED:
        if same and notes.get(OVER):
            return notes
        # A login these notes never heard of: its notes start afresh.
        return {**(notes if same else {LOGIN: token.creation_timestamp}), OVER: 1}
    if outcome == Outcome.REFRESHED and same and OVER in notes:
        return {k: v for k, v in notes.items() if k != OVER}
    return notes


def record_verdict(store: TokenStore, token: Token | None, outcome: Outcome) -> None:
    """Note what a run learnt about the login (``with_verdict``) beside the token.

    Also marks the access view when the login is over, so that readers say so too. Best effort,
    never raises: the run's own outcome is already decided and reported.
    """
    if token is None or outcome not in (Outcome.REAUTH_REQUIRED, Outcome.REFRESHED):
        return
    try:
        for _ in range(WRITE_ATTEMPTS):
            notes, version = store.read_notes()
            new = with_verdict(notes, token, outcome)
            if new is notes:
                break
            try:
                store.write_notes(new, version)
                break
            except WriteConflict:
                continue
        if outcome == Outcome.REAUTH_REQUIRED:
            store.sync_view(token, login_required=True)
    except SchwabTokensError as exc:
        log.warning("could not note what this run found of the login (%s: %s)", store.url, exc)


#: The notes come from the store, which anyone with its grant may write: a time outside the
#: range a token may carry (token.py) is no time (10**300 would crash the clock's formatting).
_LATEST = 1e12


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= _LATEST


__all__ = [
    "ACCOUNT",
    "FAILING",
    "FORCED",
    "LOGIN",
    "OVER",
    "SENT",
    "failing",
    "login_over",
    "normalized",
    "record_verdict",
    "with_verdict",
]
