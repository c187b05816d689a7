"""The refresh policy: read, decide, refresh under the lease, write conditionally, report.

It never writes the token on a failure and never raises for an expected one: every run ends in a
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
    LoginReplaced,
    LoginRequired,
    Outcome,
    RefreshTokenRejected,
    SchwabTokensError,
    TemporaryFailure,
    WriteConflict,
)
from .notes import record_verdict
from .settings import DEFAULT_LEASE_TTL, DEFAULT_REFRESH_MARGIN
from .stores.base import Lease, Stored, TokenStore
from .timefmt import minute
from .token import Token

#: How long a loser waits for the holder before giving up for this run.
LEASE_WAIT_SECONDS = 60.0
#: A conflicting writer whose document expires earlier than ours is overwritten at most this
#: many times in one run (each time conditionally on what it wrote).
CONFLICT_RETRIES = 3
#: Schwab refusing a refresh token whose login has more than this left is not the 7 days
#: running out: another login to the same app replaced it (Schwab keeps one login per app).
REPLACED_IF_LEFT_SECONDS = 3600.0
#: How long a run so refused waits for the login that replaced it to appear in the store.
REPLACED_GRACE_SECONDS = 2.0

Clock = Callable[[], float]


class TokenEndpoint(Protocol):
    """What the policy needs of Schwab's token endpoint (``oauth.SchwabOAuth`` is one)."""

    def refresh(self, refresh_token: str, *, time_left: float = ...) -> dict[str, Any]:
        """Schwab's answer to a refresh grant, as parsed JSON.

        No retry starts that could not end within ``time_left`` seconds (the lease's). Raises
        ``RefreshTokenRejected`` when Schwab refuses the refresh token, ``BadAppCredentials``
        for a wrong app key or secret, ``TemporaryFailure`` when no usable answer came, and
        ``ConfigurationError`` for any other refusal.
        """
        ...


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
    #: What the run did to the access view: "written", "current", or None (not reached).
    view: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run ended without an error."""
        return self.error is None

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this run: 0, or its error's ``exit_code``."""
        return 0 if self.error is None else int(self.error.exit_code)

    @property
    def access_seconds_left(self) -> float | None:
        """Seconds the access token had left when the run ended, or None with no token."""
        return None if self.token is None else self.token.access_seconds_left(self.checked_at)

    @property
    def refresh_hours_left(self) -> float | None:
        """Hours the login had left when the run ended, or None with no token."""
        if self.token is None:
            return None
        return self.token.refresh_seconds_left(self.checked_at) / 3600

    @property
    def temporary(self) -> bool:
        """Whether the run failed for a reason that may pass (``TemporaryFailure``)."""
        return isinstance(self.error, TemporaryFailure)

    def to_dict(self) -> dict[str, Any]:
        """The result as ``refresh --json`` and the logs show it (no secret, a fingerprint)."""
        left = self.access_seconds_left
        hours = self.refresh_hours_left
        return {
            "store": self.store,
            "outcome": str(self.outcome),
            "access_seconds_left": None if left is None else round(left),
            "refresh_seconds_left": None if hours is None else round(hours * 3600),
            "refresh_hours_left": None if hours is None else round(hours, 2),
            "fingerprint": None if self.token is None else self.token.fingerprint,
            "access_view": self.view,
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
    lease_ttl: float = DEFAULT_LEASE_TTL,
    lease_wait: float = LEASE_WAIT_SECONDS,
    clock: Clock = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """One run of the policy on one store.

    ``endpoint`` is a factory so that a run that finds the token fresh never loads the app
    credentials (a Secrets Manager or SSM call in Lambda). ``force`` refreshes a token that is
    still fresh, unless another writer stores a fresh one while this run waits for the lease.
    ``lease_ttl`` bounds how long a crashed holder can block the others. Never raises a
    ``SchwabTokensError``: the error is in the result.
    """
    started = time.monotonic()
    policy = _Policy(store, endpoint, margin, force, lease_ttl, lease_wait, clock, sleep)
    try:
        outcome, token = policy.run()
        # The consumers' view, only now that the token it mirrors is stored: repaired when
        # missing or behind. Consumers depend on it, so a view that cannot be written fails
        # the run (the alarm and the e-mails then say so).
        view = store.sync_view(token)
        result = RunResult(store.url, outcome, token=token, checked_at=clock(), view=view)
    except SchwabTokensError as exc:
        result = RunResult(
            store.url, exc.outcome, token=policy.last_seen, error=exc, checked_at=clock()
        )
    # Whoever runs the policy (the refresher, `refresh`, `watch`) notes a login found over, and
    # a refresh that proves it alive, so that status, doctor and readers say the same.
    record_verdict(store, result.token, result.outcome)
    result.duration_ms = (time.monotonic() - started) * 1000
    return result


class _Policy:
    def __init__(
        self,
        store: TokenStore,
        endpoint: Callable[[], TokenEndpoint],
        margin: float,
        force: bool,
        lease_ttl: float,
        lease_wait: float,
        clock: Clock,
        sleep: Callable[[float], None],
    ) -> None:
        self.store = store
        self.endpoint = endpoint
        self.margin = margin
        self.force = force
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait
        self.clock = clock
        self.sleep = sleep
        #: The last document seen, for the report when the run fails half-way.
        self.last_seen: Token | None = None
        self.first_version: str | None = None

    def run(self) -> tuple[Outcome, Token]:
        first = self.read()
        self.first_version = first.version
        if not self.due(first):
            # Fresh, but a login past its 7 days is over all the same: say so while the last
            # access token still works, rather than "still fresh".
            self.check_login_alive(first.token)
            return Outcome.STILL_FRESH, first.token
        try:
            return self.under_lease(first, stop_when_written=True)
        except _Rejected as rejected:
            # Outside the lease: the login that replaced ours may need the store's lock to land.
            return self.after_rejection(rejected.token, rejected.error)

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
                self.check_login_alive(latest.token)
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
        try:
            answer = endpoint.refresh(latest.token.refresh_token, time_left=lease.time_left())
        except RefreshTokenRejected as exc:
            raise _Rejected(latest.token, exc) from None
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
        # Forced: unless another writer stored a fresh token since this run began.
        return stored.version == self.first_version

    def check_login_alive(self, token: Token) -> None:
        now = self.clock()
        if token.refresh_seconds_left(now) > 0:
            return
        raise LoginRequired(
            f"the login of {minute(token.creation_timestamp)} ended 7 days after it, at "
            f"{minute(token.refresh_expires_at)}; {_access_left(token, now)}; "
            f"run `schwab-tokens login --store {self.store.url}` to log in again"
        )

    def after_rejection(self, token: Token, exc: RefreshTokenRejected) -> tuple[Outcome, Token]:
        """Schwab refused the refresh token. A login stored meanwhile (it is what killed ours:
        Schwab keeps one login per app) is the token now; otherwise say why it died."""
        left = token.refresh_seconds_left(self.clock())
        # With days left, another login killed it. If it is one of ours (the phone's, a laptop's
        # `login`), its token lands within seconds of Schwab's answer: wait for it a moment
        # rather than tell the user their fresh login was "replaced".
        grace = self.clock() + (REPLACED_GRACE_SECONDS if left > REPLACED_IF_LEFT_SECONDS else 0)
        while True:
            latest = self.read()
            if latest.token.creation_timestamp > token.creation_timestamp:
                if latest.token.needs_refresh(self.margin, self.clock()):
                    raise TemporaryFailure(
                        f"{self.store.url} changed while refreshing (a new login) and the new "
                        "document is not fresh; nothing was overwritten, try again"
                    )
                return Outcome.STILL_FRESH, latest.token
            if self.clock() >= grace:
                break
            self.sleep(1.0)
        now = self.clock()
        left = token.refresh_seconds_left(now)
        access = _sentence(_access_left(token, now))
        command = f"`schwab-tokens login --store {self.store.url}`"
        if left > REPLACED_IF_LEFT_SECONDS:
            raise LoginReplaced(
                f"{exc}, although its login of {minute(token.creation_timestamp)} still had "
                f"{left / 86400:.1f} days left: another login to this app replaced this one. "
                "Schwab keeps one login per app, and a login with another tool (schwab-py's "
                "easy_client, Schwabdev, a second schwab-tokens login) ends the older one. "
                f"{access}. Run {command} to log in again, and let only this tool log in to "
                "this app: other programs read its token"
            ) from None
        raise LoginRequired(
            f"{exc}: its login of {minute(token.creation_timestamp)} ends at "
            f"{minute(token.refresh_expires_at)} (7 days). {access}. Run {command} to log in again"
        ) from None

    def check_lease(self, lease: Lease, consequence: str) -> None:
        if not lease.valid():
            raise LeaseLost(
                f"the lease on {self.store.url} ran out ({self.lease_ttl:g} s) before the "
                f"refresh was done, so this run {consequence}; the stored token is untouched"
            )


class _Rejected(Exception):
    """Schwab refused the refresh token: carried out of the lease to ``after_rejection``."""

    def __init__(self, token: Token, error: RefreshTokenRejected) -> None:
        super().__init__(str(error))
        self.token = token
        self.error = error


def _access_left(token: Token, now: float) -> str:
    """How long the bots keep working on the last access token."""
    left = token.access_seconds_left(now)
    if left <= 0:
        return f"the last access token ran out at {minute(token.access_expires_at)}"
    return (
        f"the last access token still works for {int(left // 60)} min (until "
        f"{minute(token.access_expires_at)})"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _better(theirs: Token, ours: Token) -> bool:
    """Whether the other writer's document should be kept rather than ours."""
    if theirs.creation_timestamp != ours.creation_timestamp:
        return theirs.creation_timestamp > ours.creation_timestamp  # a newer login wins
    return theirs.access_expires_at >= ours.access_expires_at
