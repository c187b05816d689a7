"""The single-flight lease is judged on the store's clock, never on a writer's.

A writer whose clock is 150 s fast (``faketime``, a real process) must not take a live lease that
its own clock thinks has expired; a holder whose clock is 150 s slow must not keep a lease longer
than its ttl on the store's clock. S3 and Secrets Manager run on moto's server over HTTP; the
file store's flock has no clock. Without libfaketime these tests skip, or fail under CI
(``tests/requirements.py``).
"""

from __future__ import annotations

import glob
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from devkit.emulator import Emulator
from devkit.user import CLI, cli_env, login
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.helpers import assert_no_secrets, wait_for
from tests.reliability.support import record
from tests.requirements import INSTALL_SCRIPT, require_tool
from tests.s3_proxy import S3Proxy

TTL = 4.0
#: How long the first test holds the lease: time enough for a rival on a loaded machine to
#: start and try many times, yet far short of its 150 s skew, so that a rival judging the
#: lease by its own clock would take it at its first try.
HOLD_TTL = 60.0
#: The rival's requests to the store before we release: its first read and several refused
#: tries at the lease. A rival that took the lease would have called Schwab long before (right
#: after its first try and a read); its later requests are the writes that follow that call.
RIVAL_REQUESTS = 12


@pytest.fixture
def libfaketime() -> str:
    """Debian's libfaketime (skips without it, fails under CI)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return require_tool(
        "libfaketime", f"apt-get install faketime, or {INSTALL_SCRIPT}", next(iter(found), None)
    )


def skewed(
    libfaketime: str, seconds: int, args: list[str], env: dict[str, str]
) -> subprocess.Popen[str]:
    """The CLI in a process whose wall clock is ``seconds`` off (libfaketime preloaded into the
    CLI's own process, so a signal reaches it directly)."""
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "LD_PRELOAD": libfaketime, "FAKETIME": f"{seconds:+d}s"},
    )


@pytest.fixture
def relay(s3_proxy: S3Proxy, aws_endpoint: str) -> Iterator[S3Proxy]:
    """The session's S3 proxy as a plain relay to moto's server (S3 and Secrets Manager alike)
    that counts the requests of the processes pointed at it."""
    s3_proxy.reset(list_bucket=True)  # moto's answers relayed as they are
    yield s3_proxy
    s3_proxy.reset(list_bucket=False)


@pytest.fixture(params=["s3", "secretsmanager"])
def url(request: pytest.FixtureRequest, aws_endpoint: str) -> str:
    if request.param == "s3":
        return str(request.getfixturevalue("s3_store_url")())
    return str(request.getfixturevalue("sm_store_url")())


def test_a_fast_clock_cannot_take_a_live_lease(
    url: str, emulator: Emulator, relay: S3Proxy, libfaketime: str
) -> None:
    """We hold the lease until the rival has asked the store for it again and again (its
    requests counted by a relay, not timed, so a slow start cannot end the test before it
    tried), and Schwab heard nothing from it meanwhile; it refreshes once we release."""
    store = store_from_url(url, Settings())
    login(store, emulator)
    env = cli_env(emulator, AWS_ENDPOINT_URL=relay.url, SCHWAB_TOKENS_LEASE_TTL=str(TTL))
    calls = emulator.token_calls
    with store.lease(HOLD_TTL, 5) as lease:
        assert lease.held
        rival = skewed(libfaketime, +150, ["refresh", "--force", "--json", "--store", url], env)
        wait_for(
            lambda: relay.requests >= RIVAL_REQUESTS or rival.poll() is not None,
            what="the rival's tries at the lease",
        )
        double = emulator.token_calls > calls
        assert lease.valid()
    out, err = rival.communicate(timeout=60)
    record("clock_skew", store=url.split(":")[0], skew=150, double_holder=double, passed=not double)
    assert not double, "the writer with a fast clock called Schwab while we held"
    assert rival.returncode == 0, (out, err)
    assert json.loads(out)["outcome"] == "refreshed"  # it got the lease once we released it
    assert emulator.token_calls - calls == 1
    assert_no_secrets(out + err, emulator.issued_secrets() | {emulator.app_secret})


def test_a_slow_clock_cannot_keep_a_dead_lease(
    url: str, emulator: Emulator, aws_endpoint: str, libfaketime: str
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
    holder = skewed(libfaketime, -150, ["refresh", "--force", "--store", url], env)
    wait_for(lambda: emulator.token_calls > calls, what="the holder's call to Schwab")
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
    from devkit.user import oauth_for
    from schwab_tokens.policy import run

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
