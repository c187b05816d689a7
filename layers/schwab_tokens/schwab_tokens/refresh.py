"""The refresh policy: read, decide, refresh under the lease, write conditionally, report.

It never writes on a failure and never raises for an expected one: every run ends in a
``RunResult`` that the CLI turns into an exit code and the handler into logs and metrics. No AWS
and no HTTP here; the store, the token endpoint and the clock are handed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import (
    LeaseLost,
    LoginRequired,
    Outcome,
    SchwabTokensError,
    TemporaryFailure,
    WriteConflict,
)
from .settings import DEFAULT_LEASE_TTL, DEFAULT_REFRESH_MARGIN
from .stores.base import Lease, Stored, TokenStore
from .token import Token

#: How long a loser waits for the holder before giving up for this run.
LEASE_WAIT_SECONDS = 60.0
#: A conflicting writer whose document expires earlier than ours is overwritten at most this
#: many times in one run (each time conditionally on what it wrote).
CONFLICT_RETRIES = 3

Clock = Callable[[], float]


class TokenEndpoint(Protocol):
    def refresh(self, refresh_token: str) -> dict[str, Any]: ...


@dataclass
class RunResult:
    """What one run did to one token; ``error`` is set for ``reauth_required`` and ``failed``.

    ``token`` is the last document the run saw (the stored one, or the one it wrote).
    """

    store: str
    outcome: Outcome
    duration_ms: float = 0.0
    token: Token | None = field(default=None, repr=False)
    error: SchwabTokensError | None = None
    checked_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else int(self.error.exit_code)

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
            "outcome": str(self.outcome),
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
    margin: float = DEFAULT_REFRESH_MARGIN,
    force: bool = False,
    force_before: float | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    lease_wait: float = LEASE_WAIT_SECONDS,
    clock: Clock = time.time,
) -> RunResult:
    """One run of the policy on one store.

    ``endpoint`` is a factory so that a run that finds the token fresh never loads the app
    credentials (a Secrets Manager or SSM call in Lambda). ``force`` refreshes a token that is
    still fresh, unless another writer stores a fresh one while this run waits for the lease,
    or, given ``force_before``, unless it was issued at or after that time (so a retried forced
    event does not refresh again what its first attempt refreshed). ``lease_ttl`` bounds how
    long a crashed holder can block the others.
    """
    started = time.monotonic()
    policy = _Policy(store, endpoint, margin, force, force_before, lease_ttl, lease_wait, clock)
    try:
        outcome, token = policy.run()
        result = RunResult(store.url, outcome, token=token, checked_at=clock())
    except SchwabTokensError as exc:
        result = RunResult(
            store.url, exc.outcome, token=policy.last_seen, error=exc, checked_at=clock()
        )
    result.duration_ms = (time.monotonic() - started) * 1000
    return result


class _Policy:
    def __init__(
        self,
        store: TokenStore,
        endpoint: Callable[[], TokenEndpoint],
        margin: float,
        force: bool,
        force_before: float | None,
        lease_ttl: float,
        lease_wait: float,
        clock: Clock,
    ) -> None:
        self.store = store
        self.endpoint = endpoint
        self.margin = margin
        self.force = force
        self.force_before = force_before
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait
        self.clock = clock
        #: The last document seen, for the report when the run fails half-way.
        self.last_seen: Token | None = None
        self.first_version: str | None = None

    def run(self) -> tuple[Outcome, Token]:
        first = self.read()
        self.first_version = first.version
        if not self.due(first):
            return Outcome.STILL_FRESH, first.token
        return self.under_lease(first, stop_when_written=True)

    def under_lease(self, first: Stored, *, stop_when_written: bool) -> tuple[Outcome, Token]:
        """Take the lease, re-read (the previous holder may have refreshed) and refresh if still
        due. A loser stops queueing as soon as the holder has written; if what it wrote is not
        fresh either (rare), it queues once more, to the end."""

        def someone_wrote() -> bool:
            return self.store.version() != first.version

        abandon_if = someone_wrote if stop_when_written else None
        with self.store.lease(self.lease_ttl, self.lease_wait, abandon_if) as lease:
            latest = self.read()
            if not self.due(latest):
                return Outcome.STILL_FRESH, latest.token
            if lease.held:
                return self.refresh_and_write(latest, lease)
        return self.under_lease(first, stop_when_written=False)

    def refresh_and_write(self, latest: Stored, lease: Lease) -> tuple[Outcome, Token]:
        self.check_login_alive(latest.token)
        # The client first (loading the app credentials can take AWS calls), then the lease
        # check right before the call, so the check is as late as it can be.
        endpoint = self.endpoint()
        self.check_lease(lease, "did not call Schwab")
        answer = endpoint.refresh(latest.token.refresh_token)
        new = latest.token.refreshed(answer, now=self.clock())
        self.check_lease(lease, "did not store the new token (the next run refreshes again)")
        try:
            self.store.write(new, latest.version)
        except WriteConflict:
            return self.settle_conflict(new, lease)
        self.last_seen = new
        return Outcome.REFRESHED, new

    def settle_conflict(self, new: Token, lease: Lease) -> tuple[Outcome, Token]:
        """Someone wrote between our read and our write (schwab-py refreshing inside a bot, a
        login). Keep whichever document is better: a newer login always wins; otherwise the one
        that expires later, so a fresh token is never thrown away for an older one."""
        for _ in range(CONFLICT_RETRIES):
            winner = self.read()
            if winner.token == new:
                # Our write landed; only its answer was lost and the retry was refused.
                self.last_seen = new
                return Outcome.REFRESHED, new
            if _better(winner.token, new):
                if winner.token.needs_refresh(self.margin, self.clock()):
                    raise TemporaryFailure(
                        f"{self.store.url} changed while refreshing and the new document is "
                        "not fresh; nothing was overwritten, try again"
                    )
                return Outcome.STILL_FRESH, winner.token
            self.check_lease(lease, "did not overwrite the older token another writer stored")
            try:
                self.store.write(new, winner.version)
            except WriteConflict:
                continue
            self.last_seen = new
            return Outcome.REFRESHED, new
        raise WriteConflict(f"{self.store.url} kept changing while the new token was written")

    # -- helpers -----------------------------------------------------------------------------
    def read(self) -> Stored:
        stored = self.store.read()
        self.last_seen = stored.token
        return stored

    def due(self, stored: Stored) -> bool:
        """Whether this run should refresh what ``stored`` holds."""
        token = stored.token
        if token.needs_refresh(self.margin, self.clock()):
            return True
        if not self.force:
            return False
        if self.force_before is not None:
            return token.issued_at < self.force_before
        # Forced: unless another writer stored a fresh token since this run began.
        return stored.version == self.first_version

    def check_login_alive(self, token: Token) -> None:
        if token.refresh_seconds_left(self.clock()) <= 0:
            login = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(token.creation_timestamp))
            raise LoginRequired(
                f"the refresh token expired 7 days after the login of {login}; "
                "run `schwab-tokens login` to log in again"
            )

    def check_lease(self, lease: Lease, consequence: str) -> None:
        if not lease.valid():
            raise LeaseLost(
                f"the lease on {self.store.url} ran out ({self.lease_ttl:g} s) before the "
                f"refresh was done, so this run {consequence}; the stored token is untouched"
            )


def _better(theirs: Token, ours: Token) -> bool:
    """Whether the other writer's document should be kept rather than ours."""
    if theirs.creation_timestamp != ours.creation_timestamp:
        return theirs.creation_timestamp > ours.creation_timestamp  # a newer login wins
    return theirs.access_expires_at >= ours.access_expires_at
