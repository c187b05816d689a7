"""In-memory stand-ins for the refresh policy's collaborators, on an injected clock.

``FakeStore`` implements the real ``TokenStore`` ABC: every write is a compare-and-swap on a
version, the single-flight lease is the real backends' polling loop (``stores.base.polled_lease``)
on the fake clock, and the notes have the same compare-and-swap. Waiting for a busy lease
advances the clock instead of sleeping, and runs what "the other writers" do meanwhile
(``while_waiting``), so a test can say exactly what happens while a run queues.

``FakeEndpoint`` is Schwab's token endpoint: it counts calls and the factory's calls (loading the
app credentials), can fail, can answer slowly (by advancing the clock) and can let another
writer act while the call is in flight (``during_call``).

Nothing here sleeps; the only package code here is that polling loop.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from schwab_tokens.access import AccessView
from schwab_tokens.errors import LoginRequired, SchwabTokensError, WriteConflict
from schwab_tokens.stores.base import Lease, RawDocument, TokenStore, View, polled_lease
from schwab_tokens.token import Token

#: A fixed, plausible "now" (2024-11-22): tests never depend on the real clock.
EPOCH = 1_732_300_000.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class AheadClock:
    """The real clock, moved ahead when told to: ages what a reader holds in an instant, while
    tokens issued meanwhile (by the emulator, on real time) stay in step with it."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead

    def advance(self, seconds: float) -> float:
        self.ahead += seconds
        return self()


def token_at(
    clock: FakeClock | float,
    *,
    login: float | None = None,
    left: float = 1800,
    lifetime: int = 1800,
    access: str | None = None,
    refresh: str = "RT-login-0001",
) -> Token:
    """A document whose access token has ``left`` seconds to live at the clock's time, from a
    login at ``login`` (default: ``lifetime - left`` seconds before now, i.e. this is the
    login's own first token if nothing else is said)."""
    now = clock() if callable(clock) else float(clock)
    expires_at = int(now + left)
    created = int(expires_at - lifetime if login is None else login)
    return Token(
        created,
        {
            "access_token": access or f"AT-{expires_at}-{next(_serial)}",
            "refresh_token": refresh,
            "id_token": "ID-token",
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": "api",
            "expires_at": expires_at,
        },
    )


_serial = itertools.count(1)


@dataclass
class WriteRecord:
    """One write that reached the store: who, what, on which version."""

    writer: str
    token: Token
    expected_version: str | None
    landed: bool


@dataclass(eq=False, repr=False)
class FakeStore(TokenStore):
    """One token document in memory, its lease and its notes (see the module docstring)."""

    clock: FakeClock = field(default_factory=FakeClock)
    url: str = "memory://tokens"
    #: Run once per poll while this store's lease is busy: the other writers' progress.
    while_waiting: list[Callable[[], None]] = field(default_factory=list)
    #: Run at the start of the n-th ``read_raw`` (1-based): e.g. a read that stalls.
    on_read: dict[int, Callable[[], None]] = field(default_factory=dict)
    #: Run just before the policy's next writes (one per write): another writer gets in first.
    before_write: list[Callable[[], None]] = field(default_factory=list)
    #: The next conditional write lands but its answer is lost (a retry is refused).
    lose_next_write_answer: bool = False
    writes: list[WriteRecord] = field(default_factory=list)
    reads: int = 0
    leases_taken: int = 0
    leases_abandoned: int = 0
    _raw: bytes | None = None
    _version: int = 0
    _written_at: float | None = None
    _holder: str | None = None
    _holder_expires: float = 0.0
    _notes: bytes | None = None
    _notes_version: int = 0
    _owners: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _view: FakeView = field(default_factory=lambda: FakeView())

    # -- what tests see -----------------------------------------------------------------------
    @property
    def token(self) -> Token:
        assert self._raw is not None, "nothing stored"
        return Token.parse(self._raw)

    @property
    def raw(self) -> bytes | None:
        return self._raw

    def put(self, token: Token | bytes, writer: str = "other") -> str:
        """Another writer's (or a login's) write: unconditional, a new version."""
        raw = token if isinstance(token, bytes) else token.to_json()
        if isinstance(token, Token):
            self.writes.append(WriteRecord(writer, token, self.version(), True))
        return self._store(raw)

    def hold_lease(self, ttl: float = 120.0, owner: str = "other") -> None:
        """Another writer takes the lease (as if it were refreshing right now)."""
        assert self._lease_free(), "the lease is taken"
        self._holder, self._holder_expires = owner, self.clock() + ttl

    def release_lease(self, owner: str = "other") -> None:
        if self._holder == owner:
            self._holder = None

    @property
    def lease_holder(self) -> str | None:
        return None if self._lease_free() else self._holder

    # -- TokenStore ---------------------------------------------------------------------------
    def read_raw(self) -> RawDocument:
        self.reads += 1
        action = self.on_read.get(self.reads)
        if action is not None:
            action()
        if self._raw is None:
            raise self.no_token_error()
        return RawDocument(self._raw, self.version() or "", self._written_at)

    def version(self) -> str | None:
        return None if self._raw is None else f"v{self._version}"

    def write(self, token: Token, expected_version: str | None) -> str:
        if self.before_write:
            self.before_write.pop(0)()
        landed = self.version() == expected_version
        self.writes.append(WriteRecord("policy", token, expected_version, landed))
        if not landed:
            raise self.changed_error("holds a token" if expected_version is None else "changed")
        version = self._store(token.to_json())
        if self.lose_next_write_answer:
            self.lose_next_write_answer = False
            # The retry of a write that landed names the old version: refused.
            raise self.changed_error()
        return version

    def lease(
        self, ttl: float, wait: float, abandon_if: Callable[[], bool] | None = None
    ) -> contextlib.AbstractContextManager[Lease]:
        """The backends' own polling loop (``polled_lease``) on the fake clock: each pause
        advances the clock and lets the other writers (``while_waiting``) act."""
        owner = f"policy-{next(self._owners)}"

        def try_acquire() -> bool:
            if not self._lease_free():
                return False
            self._holder, self._holder_expires = owner, self.clock() + ttl
            self.leases_taken += 1
            return True

        def gave_up() -> bool:
            if abandon_if is None or not abandon_if():
                return False
            self.leases_abandoned += 1
            return True

        def pause(seconds: float) -> None:
            self.clock.advance(seconds)
            if self.while_waiting:
                self.while_waiting.pop(0)()

        return polled_lease(
            try_acquire,
            lambda: self.release_lease(owner),
            wait,
            ttl,
            self.url,
            gave_up,
            clock=self.clock,
            sleep=pause,
        )

    @property
    def view(self) -> FakeView:
        return self._view

    def read_notes_raw(self) -> tuple[bytes | None, str | None]:
        if self._notes is None:
            return None, None
        return self._notes, f"n{self._notes_version}"

    def write_notes_raw(self, raw: bytes, expected_version: str | None) -> str:
        if self.read_notes_raw()[1] != expected_version:
            raise self.changed_error("notes changed")
        self._notes, self._notes_version = raw, self._notes_version + 1
        return f"n{self._notes_version}"

    # -- helpers ------------------------------------------------------------------------------
    def _store(self, raw: bytes) -> str:
        self._raw, self._version, self._written_at = raw, self._version + 1, self.clock()
        return f"v{self._version}"

    def _lease_free(self) -> bool:
        return self._holder is None or self.clock() >= self._holder_expires

    @property
    def policy_writes(self) -> list[WriteRecord]:
        return [w for w in self.writes if w.writer == "policy"]


@dataclass
class FakeView(View):
    """An access view in memory: what the policy's ``sync_view`` wrote, and how often."""

    url: str = "memory://tokens.access"
    stored: AccessView | None = None
    puts: int = 0

    def read_raw(self) -> RawDocument:
        if self.stored is None:
            raise LoginRequired("no access view yet")
        return RawDocument(self.stored.to_json(), str(self.puts))

    def current(self) -> tuple[AccessView | None, str | None]:
        return self.stored, None if self.stored is None else str(self.puts)

    def put(self, view: AccessView, expected_version: str | None) -> None:
        if self.current()[1] != expected_version:
            raise WriteConflict(f"{self.url} changed")
        self.stored, self.puts = view, self.puts + 1


class FakeEndpoint:
    """Schwab's token endpoint on the fake clock: answers a refresh grant like Schwab does."""

    def __init__(self, clock: FakeClock, *, lifetime: int = 1800) -> None:
        self.clock = clock
        self.lifetime = lifetime
        #: How long a call takes (fake time).
        self.seconds = 0.0
        #: Answer this instead of a good token (a malformed 200).
        self.answer: Any = None
        #: Raised by the next calls, in order (then answers normally).
        self.failures: list[SchwabTokensError] = []
        #: Run while the call is in flight (after it arrived, before it answers).
        self.during_call: list[Callable[[], None]] = []
        #: How long building the client takes (fake time): loading the app credentials.
        self.factory_seconds = 0.0
        self.calls = 0
        self.factory_calls = 0
        self.refresh_tokens: list[str] = []
        #: The lease time the policy gave each call.
        self.time_left: list[float] = []

    def factory(self) -> FakeEndpoint:
        """What ``refresh.run`` is handed: building the client loads the app credentials."""
        self.factory_calls += 1
        self.clock.advance(self.factory_seconds)
        return self

    def refresh(self, refresh_token: str, *, time_left: float = math.inf) -> dict[str, Any]:
        self.calls += 1
        self.time_left.append(time_left)
        self.refresh_tokens.append(refresh_token)
        for action in self.during_call:
            action()
        self.clock.advance(self.seconds)
        if self.failures:
            raise self.failures.pop(0)
        if self.answer is not None:
            return dict(self.answer) if isinstance(self.answer, dict) else self.answer
        return {
            "access_token": f"AT-refreshed-{self.calls}-{next(_serial)}",
            "refresh_token": refresh_token,
            "id_token": "ID-token",
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "scope": "api",
        }


__all__ = ["EPOCH", "FakeClock", "FakeEndpoint", "FakeStore", "FakeView", "token_at"]
