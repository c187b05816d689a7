"""Concurrency soak: 20 refreshers and 20 readers on one store, round after round.

Time: the package computes ``expires_at`` and the refresh token's age from the real clock, the
emulator from its own. Each round lets ``SHIFT`` seconds of simulated time pass on both sides at
once, while nothing else runs: the emulator's clock moves forward, and the stored document's
``expires_at`` and ``creation_timestamp`` move back by as much (one conditional write, as a
clock keeper outside the package). Both sides then agree that the access token has
``MARGIN - 5`` s left, i.e. it is due, and that the login is ``SHIFT`` seconds older: over 100
rounds the refresh token ages ~33 hours on both clocks alike. Readers' caches predate the shift,
so they are invalidated with it (in real time they would have aged with it).

Then, all released at once by a barrier: 20 refreshers (``refresh.run``, each with its own store
object and its own OAuth session, as separate schedulers and laptops would be) and 20 readers
(``TokenReader``, each with its own store object): 10 warm ones (the default margin, as a
consumer Lambda) and 10 cold ones that re-read the store on every call. Invariants:

- exactly one token-endpoint call per round (every round needed one), one ``refreshed`` and 19
  ``still_fresh`` outcomes, no error anywhere;
- no reader ever gets an access token with 300 s or less left, and every distinct access token
  a reader got in a round is accepted by the emulator's account route right after the round;
- a cold read that starts after the round's refresh returns the refreshed token (no stale read);
- the stored document keeps the login's refresh token and (shifted) login time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.reader import TokenReader
from schwab_tokens.refresh import REFRESHED, STILL_FRESH, run
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.token import Token
from tests.emulator import Emulator
from tests.helpers import login
from tests.integration.test_shared_store import accepted
from tests.reliability.support import new_store, record

#: Rounds per store (``RELIABILITY_SOAK_ROUNDS`` overrides all three). A loser stops queueing
#: for the lease once the winner has written (``abandon_if`` in ``refresh._run``), so a round of
#: 20 refreshers on moto's S3 takes about 1.5 s. Secrets Manager's label lease makes 20
#: simultaneous contenders back off together, and moto's DescribeSecret grows with every
#: version the soak leaves (AWS prunes them): ~5 s a round, so 25 rounds by default there.
ROUNDS = {"file": 100, "s3": 100, "secretsmanager": 25}
ROUNDS_ENV = "RELIABILITY_SOAK_ROUNDS"
REFRESHERS = 20
READERS = 20
MARGIN = 600.0
LIFETIME = 1800
#: Simulated seconds per round: the freshly refreshed token ends the shift 5 s inside the margin.
SHIFT = LIFETIME - int(MARGIN) + 5
#: schwab-py refreshes by itself below 300 s: a reader must never hand out less.
LEEWAY = 300.0
COLD_READ_PAUSE = 0.25


@dataclass
class Seen:
    """What the readers saw in one round."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: set[str] = field(default_factory=set)
    reads: int = 0
    min_left: float = float("inf")
    errors: list[str] = field(default_factory=list)

    def add(self, token: Token) -> None:
        left = token.access_seconds_left()
        with self.lock:
            self.reads += 1
            self.tokens.add(token.access_token)
            self.min_left = min(self.min_left, left)
            if left <= LEEWAY:
                self.errors.append(f"a reader got a token with {left:.0f} s left")


def shift_time(url: str, emulator: Emulator) -> Token:
    """Let SHIFT seconds pass on both clocks (see the module docstring)."""
    store = store_from_url(url)
    stored = store.read()
    old = stored.token
    moved = Token(
        old.creation_timestamp - SHIFT,
        {**old.token, "expires_at": int(old.token["expires_at"]) - SHIFT},
    )
    store.write(moved, stored.version)
    emulator.advance(SHIFT)
    return moved


def read_once(reader: TokenReader, seen: Seen) -> Token:
    """``access_token()`` as a consumer calls it, paired with the document it came from."""
    for _ in range(20):
        access = reader.access_token()
        token = reader.token()
        if token.access_token == access:  # else the cache was re-read in between: again
            seen.add(token)
            return token
    raise AssertionError("the reader's token kept changing under it")


def play_round(
    stores: list[TokenStore],
    endpoints: list[SchwabOAuth],
    warm: list[TokenReader],
    cold: list[TokenReader],
) -> tuple[Seen, list[str]]:
    """One round: every refresher and reader released at once; returns what they saw."""
    seen = Seen()
    outcomes: list[str] = []
    done = threading.Event()
    barrier = threading.Barrier(len(stores) + len(warm) + len(cold))

    def refresher(store: TokenStore, oauth: SchwabOAuth) -> None:
        barrier.wait()
        outcome = run(store, lambda: oauth, margin=MARGIN, lease_wait=60)
        with seen.lock:
            outcomes.append(outcome.outcome)
            if outcome.error is not None:
                seen.errors.append(f"refresher: {outcome.outcome}: {outcome.error}")

    def reader(r: TokenReader, is_cold: bool) -> None:
        barrier.wait()
        try:
            read_once(r, seen)
            while not done.is_set():
                if is_cold:
                    read_once(r, seen)  # a consumer without a warm cache
                done.wait(COLD_READ_PAUSE if is_cold else 0.1)
            read_once(r, seen)
        except Exception as exc:
            with seen.lock:
                seen.errors.append(f"reader: {type(exc).__name__}: {exc}")

    pairs = zip(stores, endpoints, strict=True)
    workers = [threading.Thread(target=refresher, args=pair) for pair in pairs]
    readers = [threading.Thread(target=reader, args=(r, False)) for r in warm]
    readers += [threading.Thread(target=reader, args=(r, True)) for r in cold]
    for thread in workers + readers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    done.set()
    for thread in readers:
        thread.join(timeout=60)
    return seen, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "s3", "secretsmanager"])
def test_soak_many_refreshers_and_readers(
    kind: str, emulator: Emulator, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    emulator.configure(access_lifetime=LIFETIME)
    url = new_store(kind, request, tmp_path, "soak")
    first = login(store_from_url(url), emulator)
    endpoints = [
        SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url, timeout=10)
        for _ in range(REFRESHERS)
    ]
    refresh_stores = [store_from_url(url) for _ in range(REFRESHERS)]
    warm = [TokenReader(store_from_url(url)) for _ in range(READERS // 2)]
    cold = [
        TokenReader(store_from_url(url), margin=10 * LIFETIME, min_reread=0.0)
        for _ in range(READERS - READERS // 2)
    ]
    emulator.reset_counters()
    started = time.monotonic()
    needed = calls_seen = total_reads = rejected = 0
    min_left = float("inf")
    errors: list[str] = []

    rounds = int(os.environ.get(ROUNDS_ENV) or ROUNDS[kind])
    for round_no in range(rounds):
        shifted = shift_time(url, emulator)
        needed += shifted.needs_refresh(MARGIN)
        for reader in warm + cold:
            reader.invalidate()
        calls_before = emulator.token_calls
        seen, outcomes = play_round(refresh_stores, endpoints, warm, cold)

        stored = store_from_url(url).read().token
        # A cold read that starts after the refresh sees it.
        late = [read_once(r, seen).access_token for r in cold]
        calls = emulator.token_calls - calls_before
        calls_seen += calls
        total_reads += seen.reads
        min_left = min(min_left, seen.min_left)
        problems = list(seen.errors)
        if calls != 1:
            problems.append(f"{calls} token-endpoint calls")
        if sorted(outcomes) != sorted([REFRESHED] + [STILL_FRESH] * (REFRESHERS - 1)):
            problems.append(f"outcomes {sorted(outcomes)}")
        if any(access != stored.access_token for access in late):
            problems.append("a read after the refresh returned an older token")
        if stored.needs_refresh(MARGIN):
            problems.append("the stored token is not fresh after the round")
        if stored.refresh_token != first.refresh_token:
            problems.append("the refresh token changed")
        if stored.creation_timestamp != first.creation_timestamp - SHIFT * (round_no + 1):
            problems.append("the login time moved")
        refused = [t for t in seen.tokens if not accepted(emulator, t)]
        rejected += len(refused)
        if refused:
            problems.append(f"{len(refused)} token(s) a reader got are refused by Schwab")
        errors += [f"round {round_no}: {p}" for p in problems]
        if len(errors) > 20:
            break

    seconds = time.monotonic() - started
    record(
        "soak",
        store=kind,
        rounds=round_no + 1,
        refreshers=REFRESHERS,
        readers=READERS,
        needed=needed,
        calls=calls_seen,
        reads=total_reads,
        min_left=round(min_left, 1),
        rejected=rejected,
        errors=len(errors),
        seconds=round(seconds, 1),
    )
    print(
        f"{kind}: {round_no + 1} rounds in {seconds:.1f} s, {calls_seen} token calls for "
        f"{needed} due rounds, {total_reads} reads, min left {min_left:.0f} s"
    )
    assert not errors, errors
    assert needed == rounds and calls_seen == needed
