"""Concurrency soak: 20 refreshers and 20 readers on one store, round after round.

Each store's rounds are played in chunks, each a test of its own on a store of its own (so that
xdist runs them side by side); chunk ``k`` starts where the ones before it end in simulated time
(its login is ``k`` chunks of rounds older on both clocks), so together they cover the same
rounds and the same span of a login's life as one long run.

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
consumer Lambda) and 10 cold ones that re-read the store on every read (their cache lives
``COLD_CACHE`` seconds, just long enough to pair an access token with its document, far less
than their pause between reads). Invariants:

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

from devkit.emulator import Emulator
from devkit.user import login, oauth_for
from schwab_tokens.errors import Outcome
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.policy import run
from schwab_tokens.reader import TokenReader
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.token import Token
from tests.helpers import accepted
from tests.reliability.support import FULL, new_store, record

#: Rounds per store (``RELIABILITY_SOAK_ROUNDS`` overrides all three). A loser stops queueing
#: for the lease once the winner has written (``abandon_if`` in ``refresh._run``), so a round of
#: 20 refreshers on moto's S3 takes about 1.5 s. Secrets Manager's label lease makes 20
#: simultaneous contenders back off together, and moto's DescribeSecret grows with every
#: version the soak leaves (AWS prunes them): ~5 s a round, so 25 rounds by default there.
#: ``make test`` plays 8 rounds on S3 and 4 on Secrets Manager (``FULL``: all of them).
ROUNDS = (
    {"file": 100, "s3": 100, "secretsmanager": 25}
    if FULL
    else {"file": 40, "s3": 8, "secretsmanager": 4}
)
ROUNDS_ENV = "RELIABILITY_SOAK_ROUNDS"
#: Chunks per store: about 20-30 s of work each.
CHUNKS = (
    {"file": 1, "s3": 5, "secretsmanager": 5} if FULL else {"file": 1, "s3": 1, "secretsmanager": 1}
)
REFRESHERS = 20
READERS = 20
MARGIN = 600.0
LIFETIME = 1800
#: Simulated seconds per round: the freshly refreshed token ends the shift 5 s inside the margin.
SHIFT = LIFETIME - int(MARGIN) + 5
#: schwab-py refreshes by itself below 300 s: a reader must never hand out less.
LEEWAY = 300.0
COLD_READ_PAUSE = 0.25
COLD_CACHE = 0.05


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


def shift_time(url: str, emulator: Emulator, seconds: int = SHIFT) -> Token:
    """Let ``seconds`` pass on both clocks (see the module docstring)."""
    store = store_from_url(url)
    stored = store.read()
    old = stored.token
    moved = Token(
        old.creation_timestamp - seconds,
        {**old.token, "expires_at": int(old.token["expires_at"]) - seconds},
    )
    store.write(moved, stored.version)
    emulator.advance(seconds)
    return moved


def chunks() -> list[tuple[str, int, int, int]]:
    """(store, chunk, of chunks, rounds of this chunk), the store's rounds split evenly."""
    cases = []
    for kind, count in CHUNKS.items():
        total = int(os.environ.get(ROUNDS_ENV) or ROUNDS[kind])
        count = max(1, min(count, total))
        for chunk in range(count):
            cases.append((kind, chunk, count, total // count + (chunk < total % count)))
    return cases


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
) -> tuple[Seen, list[str], list[float]]:
    """One round: every refresher and reader released at once; returns what they saw, and the
    refreshers' outcomes and durations (ms)."""
    seen = Seen()
    outcomes: list[str] = []
    durations: list[float] = []
    done = threading.Event()
    barrier = threading.Barrier(len(stores) + len(warm) + len(cold))

    def refresher(store: TokenStore, oauth: SchwabOAuth) -> None:
        barrier.wait()
        outcome = run(store, lambda: oauth, margin=MARGIN, lease_wait=60)
        with seen.lock:
            outcomes.append(outcome.outcome)
            durations.append(round(outcome.duration_ms))
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
    return seen, outcomes, durations


CHUNK_CASES = chunks()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "chunk", "of", "rounds"),
    CHUNK_CASES,
    ids=[f"{kind}-{chunk + 1}of{of}" for kind, chunk, of, _ in CHUNK_CASES],
)
def test_soak_many_refreshers_and_readers(
    kind: str,
    chunk: int,
    of: int,
    rounds: int,
    emulator: Emulator,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    emulator.configure(access_lifetime=LIFETIME)
    url = new_store(kind, request, tmp_path, "soak")
    first = login(store_from_url(url), emulator)
    # A long read timeout: on a busy machine a timed-out call would be retried (and counted).
    endpoints: list[SchwabOAuth] = [oauth_for(emulator, timeout=30) for _ in range(REFRESHERS)]
    # Start where the chunks before this one end: the login as much older on both clocks, and
    # an access token just refreshed, as the last round before left it.
    done_before = sum(r for k, c, _, r in CHUNK_CASES if k == kind and c < chunk)
    if done_before:
        shift_time(url, emulator, SHIFT * done_before)
        caught_up = run(store_from_url(url), lambda: endpoints[0], force=True)
        assert caught_up.outcome == Outcome.REFRESHED, caught_up.error
        first = store_from_url(url).read().token
    refresh_stores = [store_from_url(url) for _ in range(REFRESHERS)]
    warm = [TokenReader(store_from_url(url)) for _ in range(READERS // 2)]
    cold = [
        TokenReader(store_from_url(url), reread_margin=10 * LIFETIME, min_reread=COLD_CACHE)
        for _ in range(READERS - READERS // 2)
    ]
    emulator.reset_counters()
    started = time.monotonic()
    needed = calls_seen = total_reads = rejected = 0
    min_left = float("inf")
    errors: list[str] = []

    for round_no in range(rounds):
        shifted = shift_time(url, emulator)
        needed += shifted.needs_refresh(MARGIN)
        for reader in warm + cold:
            reader.invalidate()
        calls_before = emulator.token_calls
        seen, outcomes, durations = play_round(refresh_stores, endpoints, warm, cold)

        stored = store_from_url(url).read().token
        # A cold read that starts after the refresh sees it. "Cold": a reader's cache may
        # legitimately hold the token it read up to COLD_CACHE s before the write, so it starts
        # empty, as in a new container.
        for reader in cold:
            reader.invalidate()
        late = [read_once(r, seen).access_token for r in cold]
        calls = emulator.token_calls - calls_before
        calls_seen += calls
        total_reads += seen.reads
        min_left = min(min_left, seen.min_left)
        problems = list(seen.errors)
        if calls != 1:
            problems.append(f"{calls} token-endpoint calls; refreshers took {durations} ms")
        expected = [Outcome.REFRESHED] + [Outcome.STILL_FRESH] * (REFRESHERS - 1)
        if sorted(outcomes) != sorted(expected):
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
        chunk=f"{chunk + 1}/{of}",
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
        f"{kind} {chunk + 1}/{of}: {round_no + 1} rounds in {seconds:.1f} s, {calls_seen} "
        f"calls for {needed} due rounds, {total_reads} reads, min left {min_left:.0f} s"
    )
    assert not errors, errors
    assert needed == rounds and calls_seen == needed
