"""The single-flight lease is judged on the store's clock, never on a writer's.

A writer whose clock is 150 s fast (``faketime``, a real process) must not take a live lease that
its own clock thinks has expired; a holder whose clock is 150 s slow must not keep a lease longer
than its ttl on the store's clock. S3 and Secrets Manager run on moto's server over HTTP; the
file store's flock has no clock.
"""

from __future__ import annotations

import glob
import json
import signal
import subprocess
import threading
import time

import pytest

from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.emulator import Emulator
from tests.helpers import CLI, assert_no_secrets, cli_env, login
from tests.reliability.support import record

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
TTL = 4.0

pytestmark = pytest.mark.skipif(
    LIBFAKETIME is None, reason="libfaketime not installed: run scripts/install-system-packages.sh"
)


def skewed(seconds: int, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """The CLI in a process whose wall clock is ``seconds`` off (libfaketime preloaded into the
    CLI's own process, so a signal reaches it directly)."""
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "LD_PRELOAD": LIBFAKETIME or "", "FAKETIME": f"{seconds:+d}s"},
    )


@pytest.fixture(params=["s3", "secretsmanager"])
def url(request: pytest.FixtureRequest, aws_endpoint: str) -> str:
    if request.param == "s3":
        return str(request.getfixturevalue("s3_store_url")())
    return str(request.getfixturevalue("sm_store_url")())


def test_a_fast_clock_cannot_take_a_live_lease(
    url: str, emulator: Emulator, aws_endpoint: str
) -> None:
    store = store_from_url(url, Settings())
    login(store, emulator)
    env = cli_env(emulator, AWS_ENDPOINT_URL=aws_endpoint, SCHWAB_TOKENS_LEASE_TTL=str(TTL))
    calls = emulator.token_calls
    during_hold: list[int] = []
    with store.lease(TTL, 5) as lease:
        assert lease.held
        rival = skewed(+150, ["refresh", "--force", "--json", "--store", url], env)
        hold_until = time.monotonic() + TTL * 0.6  # well inside our own deadline
        while time.monotonic() < hold_until:
            during_hold.append(emulator.token_calls - calls)
            time.sleep(0.05)
        assert lease.valid()
    out, err = rival.communicate(timeout=60)
    double = max(during_hold) > 0
    record("clock_skew", store=url.split(":")[0], skew=150, double_holder=double, passed=not double)
    assert not double, "the writer with a fast clock called Schwab while we held"
    assert rival.returncode == 0, (out, err)
    assert json.loads(out)["outcome"] == "refreshed"  # it got the lease once we released it
    assert emulator.token_calls - calls == 1
    assert_no_secrets(out + err, emulator.issued_secrets() | {emulator.app_secret})


def test_a_slow_clock_cannot_keep_a_dead_lease(
    url: str, emulator: Emulator, aws_endpoint: str
) -> None:
    """A holder whose clock is 150 s behind dies holding the lease: the next writer gets it
    within the ttl on the store's clock (plus the store's 1 s rounding), not 150 s later."""
    store = store_from_url(url, Settings())
    login(store, emulator)
    env = cli_env(
        emulator,
        AWS_ENDPOINT_URL=aws_endpoint,
        SCHWAB_TOKENS_LEASE_TTL=str(TTL),
        SCHWAB_HTTP_TIMEOUT="60",
    )
    emulator.configure(slow_seconds=60)
    emulator.set_fault("slow", count=1)  # it holds the lease while Schwab hangs
    calls = emulator.token_calls
    holder = skewed(-150, ["refresh", "--force", "--store", url], env)
    deadline = time.monotonic() + 30
    while emulator.token_calls == calls:
        assert time.monotonic() < deadline, "the holder never called Schwab"
        time.sleep(0.02)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)
    killed = time.monotonic()
    emulator.clear_faults()
    taken = threading.Event()

    def next_writer() -> None:
        with store_from_url(url, Settings()).lease(TTL, 30) as lease:
            assert lease.held
            taken.set()

    thread = threading.Thread(target=next_writer)
    thread.start()
    thread.join(40)
    waited = time.monotonic() - killed
    held_on = not taken.is_set() or waited >= TTL + 3.5
    record(
        "clock_skew", store=url.split(":")[0], skew=-150, double_holder=False, passed=not held_on
    )
    assert taken.is_set()
    assert waited < TTL + 3.5, f"waited {waited:.1f} s for a dead holder's lease"


def test_a_holder_past_its_deadline_neither_calls_nor_writes(
    url: str, emulator: Emulator, aws_endpoint: str
) -> None:
    """Its lease ran out while it waited for the lease to be worth using: nothing is sent."""
    from schwab_tokens.refresh import run
    from tests.helpers import oauth_for

    store = store_from_url(url, Settings())
    login(store, emulator)
    before = store.read_raw()
    calls = emulator.token_calls
    emulator.configure(slow_seconds=4.0)
    emulator.set_fault("slow", count=1)  # the answer comes after the 3 s lease has run out
    result = run(store, lambda: oauth_for(emulator, timeout=10), force=True, lease_ttl=3.0)
    assert result.outcome == "failed" and "lease" in str(result.error)
    assert store.read_raw() == before  # the answer came after the lease ran out: not written
    assert emulator.token_calls - calls == 1
