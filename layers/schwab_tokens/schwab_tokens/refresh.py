"""The refresh policy: read, decide, refresh under the lease, write conditionally, report.

It never writes on a failure and never raises for an expected one: every run ends in an
``Outcome`` that the CLI turns into an exit code and the handler into logs and metrics. No AWS
and no HTTP here; the store and the token endpoint are handed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import LoginRequired, SchwabTokensError, TemporaryFailure, WriteConflict
from .settings import env_number
from .stores.base import Stored, TokenStore
from .token import Token

DEFAULT_MARGIN_SECONDS = 600
#: Longer than the slowest token call with its retries, so a live holder keeps the lease.
LEASE_TTL_SECONDS = 120.0
#: How long a loser waits for the holder before giving up for this run.
LEASE_WAIT_SECONDS = 60.0

REFRESHED = "refreshed"
STILL_FRESH = "still_fresh"
REAUTH_REQUIRED = "reauth_required"
FAILED = "failed"


class TokenEndpoint(Protocol):
    def refresh(self, refresh_token: str) -> dict[str, Any]: ...


@dataclass
class Outcome:
    """What one run did to one token; ``error`` is set for ``reauth_required`` and ``failed``."""

    store: str
    outcome: str
    duration_ms: float = 0.0
    token: Token | None = field(default=None, repr=False)
    error: SchwabTokensError | None = None
    checked_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    @property
    def access_seconds_left(self) -> float | None:
        return None if self.token is None else self.token.access_seconds_left(self.checked_at)

    @property
    def refresh_hours_left(self) -> float | None:
        if self.token is None:
            return None
        return self.token.refresh_seconds_left(self.checked_at) / 3600

    @property
    def temporary(self) -> bool:
        return isinstance(self.error, TemporaryFailure)

    def to_dict(self) -> dict[str, Any]:
        left = self.access_seconds_left
        hours = self.refresh_hours_left
        return {
            "store": self.store,
            "outcome": self.outcome,
            "access_seconds_left": None if left is None else round(left),
            "refresh_hours_left": None if hours is None else round(hours, 2),
            "fingerprint": None if self.token is None else self.token.fingerprint,
            "duration_ms": round(self.duration_ms, 1),
            "error": None if self.error is None else type(self.error).__name__,
            "reason": None if self.error is None else str(self.error),
        }


def run(
    store: TokenStore,
    endpoint: Callable[[], TokenEndpoint],
    *,
    margin: float = DEFAULT_MARGIN_SECONDS,
    force: bool = False,
    lease_ttl: float | None = None,
    lease_wait: float = LEASE_WAIT_SECONDS,
) -> Outcome:
    """One run of the policy on one store.

    ``endpoint`` is a factory so that a run that finds the token fresh never loads the app
    credentials (a Secrets Manager call in Lambda). ``lease_ttl`` defaults to
    ``SCHWAB_TOKENS_LEASE_TTL`` or 120 s: how long a crashed holder can block the others.
    """
    if lease_ttl is None:
        lease_ttl = env_number("SCHWAB_TOKENS_LEASE_TTL", LEASE_TTL_SECONDS)
    started = time.monotonic()
    seen: list[Token] = []
    try:
        outcome, token = _run(store, endpoint, margin, force, lease_ttl, lease_wait, seen)
        result = Outcome(store.url, outcome, token=token)
    except SchwabTokensError as exc:
        result = Outcome(store.url, exc.outcome, token=seen[-1] if seen else None, error=exc)
    result.duration_ms = (time.monotonic() - started) * 1000
    return result


def _run(
    store: TokenStore,
    endpoint: Callable[[], TokenEndpoint],
    margin: float,
    force: bool,
    lease_ttl: float,
    lease_wait: float,
    seen: list[Token],
) -> tuple[str, Token]:
    first = _read(store, seen)
    if not force and not first.token.needs_refresh(margin):
        return STILL_FRESH, first.token

    def someone_wrote() -> bool:
        return store.version() != first.version

    # Losers stop queueing for the lease as soon as the holder has written; if what it wrote is
    # not fresh either (rare), they queue again without that shortcut.
    for abandon_if in (someone_wrote, None):
        with store.lease(lease_ttl, lease_wait, abandon_if=abandon_if) as held:
            # Re-read: the previous holder may have refreshed while we waited.
            latest = _read(store, seen)
            if latest.version != first.version and not latest.token.needs_refresh(margin):
                return STILL_FRESH, latest.token
            if not held:
                continue
            if not force and not latest.token.needs_refresh(margin):
                return STILL_FRESH, latest.token
            _check_refresh_token_alive(latest.token)
            answer = endpoint().refresh(latest.token.refresh_token)
            new = latest.token.refreshed(answer)
            try:
                store.write(new, latest.version)
            except WriteConflict:
                winner = _read(store, seen)
                if winner.token == new:
                    # Our write landed; only its answer was lost and the retry was refused.
                    return REFRESHED, new
                # Someone wrote without the lease (schwab-py refreshing inside a consumer):
                # theirs is as new as ours, so keep it rather than overwrite it.
                if winner.token.needs_refresh(margin):
                    raise TemporaryFailure(
                        f"{store.url} changed while refreshing and the new document is not "
                        "fresh; nothing was overwritten, try again"
                    ) from None
                return STILL_FRESH, winner.token
            seen.append(new)
            return REFRESHED, new
    raise AssertionError("unreachable: the second pass holds the lease or raises LeaseBusy")


def _read(store: TokenStore, seen: list[Token]) -> Stored:
    stored = store.read()
    seen.append(stored.token)
    return stored


def _check_refresh_token_alive(token: Token) -> None:
    if token.refresh_seconds_left() <= 0:
        login = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(token.creation_timestamp))
        raise LoginRequired(
            f"the refresh token expired 7 days after the login of {login}; "
            "run `schwab-tokens login` to log in again"
        )
