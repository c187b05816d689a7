"""Crash safety: SIGKILL a ``schwab-tokens refresh --force`` process at random points of a refresh.

For each store (file; S3 and Secrets Manager on moto's server) at least ``KILLS`` runs are killed
with SIGKILL, the points spread over the run by four strategies, each a test of its own (so that
xdist runs them side by side) with a quarter of the kills:

- ``random``: after a random delay within the length of an undisturbed run (measured first), so
  kills land in start-up, the read, the lease, the token call and the write in proportion to
  how long each takes;
- ``lease``: as soon as the process is seen holding the lease (the file's flock in
  ``/proc/locks``, the S3 lease object, the Secrets Manager lease label), with the token call
  held back by the emulator so the kill lands between the lease and the answer;
- ``token_call``: the emulator holds the token call (``slow``) and the kill lands inside it;
- ``write``: within a few ms of the token call's arrival (the emulator answers at once), so kills
  land while the answer is parsed and the document written.

Where each kill landed is read from the outside: whether the token call reached the emulator,
whether the stored document changed, whether a lease record was left behind. After every kill
the store must hold a document that parses and works (the old one or the new one, accepted by
the emulator's account route), the lease must free itself in bounded time (at once for the
file's flock; for S3 and Secrets Manager within the lease TTL, made short with
``SCHWAB_TOKENS_LEASE_TTL``), and the next run must refresh. Each strategy must reach the part
of a refresh it aims at at least twice. Each kill is appended to ``$RELIABILITY_REPORT``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from devkit.emulator import Emulator
from devkit.user import CLI, cli_env, login, oauth_for
from schwab_tokens.policy import run
from schwab_tokens.stores import store_from_url
from schwab_tokens.token import Token
from tests.helpers import accepted, assert_no_secrets, secrets_of
from tests.reliability.support import (
    FULL,
    lease_evidence,
    new_store,
    record,
    state,
    view_state,
)

#: Kills per store, over the four strategies.
#: (``make test`` kills 2 per strategy: 8 a store; ``make reliability``, ``FULL``, 52.)
KILLS = 50 if FULL else 8
STRATEGIES = ("random", "lease", "token_call", "write")
KILLS_PER_STRATEGY = math.ceil(KILLS / len(STRATEGIES))
#: The part of a refresh each strategy aims at (``phase_of``), reached at least twice.
AIMS = {
    "random": ("start-up / read",),
    "lease": ("lease",),
    "token_call": ("token call",),
    "write": ("answer / write", "after the write landed"),
}
#: Short enough for 50 crashes to be quick, longer than a live holder's work (a token call held
#: up to 1 s by the emulator, then the write).
LEASE_TTL = 1.5
#: How long past its TTL a dead holder's lease can live: expiry is judged on the store's clock
#: in whole seconds (S3: LastModified + ttl + 1 s against the answer's Date; Secrets Manager: a
#: label of the answer's Date + 1 s + ttl, rounded up, against a later answer's Date).
LEASE_SLACK = {"file": 0.0, "s3": 2.0, "secretsmanager": 3.0}
#: How soon after the token call's arrival a ``write`` kill lands: the answer comes at once and
#: the write takes milliseconds (a local rename, one or two calls to moto).
WRITE_WINDOW = {"file": 0.006, "s3": 0.03, "secretsmanager": 0.04}


def start(url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "refresh", "--force", "--json", "--store", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def wait_for_call(emulator: Emulator, base: int, proc: subprocess.Popen[bytes]) -> float | None:
    """When the process's token call reached the emulator (monotonic), or None if it exited."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if emulator.token_calls > base:
            return time.monotonic()
        if proc.poll() is not None:
            return None
        time.sleep(0.001)
    raise AssertionError("the refresh never called Schwab")


def calibrate(url: str, env: dict[str, str], emulator: Emulator, runs: int) -> float:
    """How long an undisturbed run takes (the median of ``runs``)."""
    totals = []
    for _ in range(runs):
        started = time.monotonic()
        proc = start(url, env)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["outcome"] == "refreshed"
        assert_no_secrets((out + err).decode(), secrets_of(emulator))
        totals.append(time.monotonic() - started)
    return sorted(totals)[len(totals) // 2]


def lease_held(kind: str, url: str, pid: int) -> bool:
    """Whether process ``pid`` holds the store's lease, seen from outside without touching it."""
    if kind != "file":
        return lease_evidence(url)
    try:
        inode = os.stat(url + ".lock").st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"
        if (
            len(fields) >= 6
            and fields[1] == "FLOCK"
            and fields[4] == str(pid)
            and fields[5].rsplit(":", 1)[-1] == str(inode)
        ):
            return True
    return False


def wait_for_lease(kind: str, url: str, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if lease_held(kind, url, proc.pid):
            return True
        time.sleep(0.002)
    return False


def phase_of(strategy: str, changed: bool, called: bool, leased: bool) -> str:
    if changed:
        return "after the write landed"  # killed in the release or the exit
    if called:
        return "token call" if strategy in ("token_call", "lease") else "answer / write"
    return "lease" if leased else "start-up / read"


def works(emulator: Emulator, token: Token, login_token: Token) -> list[str]:
    """What is wrong with a stored token that should be the login's (old or refreshed)."""
    problems = []
    if token.creation_timestamp != login_token.creation_timestamp:
        problems.append("creation_timestamp changed")
    if token.refresh_token != login_token.refresh_token:
        problems.append("refresh token changed")
    if not accepted(emulator, token.access_token):
        problems.append("access token refused by Schwab")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", ["file", "s3", "secretsmanager"])
def test_sigkill_at_random_points_never_loses_the_token(
    kind: str,
    strategy: str,
    emulator: Emulator,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    rng = random.Random(f"crash-{kind}-{strategy}-{time.time_ns()}")
    url = new_store(kind, request, tmp_path, "crash")
    login_token = login(store_from_url(url), emulator)
    env = cli_env(
        emulator,
        SCHWAB_HTTP_TIMEOUT="3",
        SCHWAB_HTTP_RETRIES="1",
        SCHWAB_TOKENS_LEASE_TTL=str(LEASE_TTL),
    )
    total = calibrate(url, env, emulator, runs=3 if strategy == "random" else 1)
    oauth = oauth_for(emulator)
    # The next run must get the lease within the TTL (plus label rounding) and then refresh.
    lease_bound = (0.0 if kind == "file" else LEASE_TTL + LEASE_SLACK[kind]) + total + 2.0

    began = time.monotonic()
    killed = attempts = lost = corrupt = 0
    phases: dict[str, int] = {}
    failures: list[str] = []
    # A random delay misses runs that finish early (a busy machine makes their length vary).
    most = (6 if strategy == "random" else 3) * KILLS_PER_STRATEGY
    while killed < KILLS_PER_STRATEGY and attempts < most:
        attempts += 1
        before = state(url)
        calls = emulator.token_calls
        slow = 0.0
        if strategy in ("token_call", "lease"):
            slow = rng.uniform(0.3, 1.0)
            emulator.configure(slow_seconds=slow)
            emulator.set_fault("slow", count=1)
        started = time.monotonic()
        proc = start(url, env)
        leased = False
        if strategy == "random":
            time.sleep(rng.uniform(0.0, total))
        elif strategy == "lease":
            leased = wait_for_lease(kind, url, proc)
        else:
            called_at = wait_for_call(emulator, calls, proc)
            if called_at is not None:
                window = slow * 0.9 if strategy == "token_call" else WRITE_WINDOW[kind]
                time.sleep(max(0.0, called_at + rng.uniform(0.0, window) - time.monotonic()))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert_no_secrets((out + err).decode(errors="replace"), secrets_of(emulator))
        lived = time.monotonic() - started
        emulator.clear_faults()
        was_killed = proc.returncode == -signal.SIGKILL
        if not was_killed:
            # Finished before the kill: it must have succeeded like any run.
            if proc.returncode != 0:
                failures.append(f"an unkilled run exited {proc.returncode}: {err.decode()}")
            continue
        killed += 1
        after = state(url)
        changed = after != before
        called = emulator.token_calls > calls
        leased = leased or lease_evidence(url)
        phase = phase_of(strategy, changed, called, leased)
        phases[phase] = phases.get(phase, 0) + 1

        damage: list[str] = []
        try:
            token = store_from_url(url).read().token
        except Exception as exc:
            corrupt += 1
            damage.append(f"the store does not parse after the kill: {exc}")
        else:
            damage += works(emulator, token, login_token)
        view = view_state(url)
        if view.startswith("WRONG"):
            damage.append(view)
        lost += bool(damage)
        # The next run: the dead holder's lease frees itself, and the token is refreshed.
        problems: list[str] = []
        next_started = time.monotonic()
        outcome = run(store_from_url(url), lambda: oauth, force=True, lease_wait=30)
        next_seconds = time.monotonic() - next_started
        if outcome.outcome != "refreshed":
            problems.append(f"the next run ended {outcome.outcome}: {outcome.error}")
        if next_seconds > lease_bound:
            problems.append(f"the next run waited {next_seconds:.1f} s for the lease")
        if state(url) == after:
            problems.append("the next run did not write")
        else:
            problems += works(emulator, store_from_url(url).read().token, login_token)
        if view_state(url) != "matches":
            problems.append(f"the next run left the view {view_state(url)}")
        if damage or problems:
            failures.append(f"kill {killed} ({strategy}, {phase}): {damage + problems}")
        record(
            "crash",
            store=kind,
            strategy=strategy,
            phase=phase,
            killed_after=round(lived, 3),
            lease_left=leased,
            next_run_seconds=round(next_seconds, 2),
            next_ok=not problems,
            lost=bool(damage),
            view=view,
            corrupt=any("parse" in d for d in damage),
            problems=damage + problems,
        )

    summary = (
        f"{kind}, {strategy}: {killed} killed in {attempts} runs (undisturbed run {total:.2f} s); "
        f"phases {dict(sorted(phases.items()))}; lost {lost}, corrupt {corrupt}"
    )
    print(summary)
    record(
        "crash_summary",
        store=kind,
        strategy=strategy,
        killed=killed,
        attempts=attempts,
        lost=lost,
        corrupt=corrupt,
        phases=phases,
        seconds=round(time.monotonic() - began, 1),
    )
    assert not failures, failures
    assert killed >= KILLS_PER_STRATEGY, summary
    assert lost == 0 and corrupt == 0, summary
    # The kills reach the part of a refresh this strategy aims at.
    # (``make test``'s 3 kills a strategy: the aimed ones must land once; ``random`` anywhere.)
    aimed = 2 if FULL else 0 if strategy == "random" else 1
    assert sum(phases.get(phase, 0) for phase in AIMS[strategy]) >= aimed, summary
