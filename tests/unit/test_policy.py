"""The refresh policy (``refresh.run``) branch by branch, against in-memory fakes on a fake clock.

Each test sets up what the store holds, what the other writers do and when (while this run
waits for the lease, while its token call is in flight, just before its write) and what Schwab
answers, then checks what a user sees: the outcome and exit code, how many times Schwab was
called, whether the app credentials were loaded, and what the store holds afterwards. The same
branches run against the real stores, processes and the emulator in tests/reliability; here
they take milliseconds and nothing sleeps.
"""

from __future__ import annotations

import pytest

from schwab_tokens import errors
from schwab_tokens.access import AccessView
from schwab_tokens.errors import (
    BadAppCredentials,
    ExitCode,
    InvalidTokenAnswer,
    LeaseBusy,
    LeaseLost,
    LoginReplaced,
    Outcome,
    RefreshTokenRejected,
    SchwabTokensError,
    WriteConflict,
)
from schwab_tokens.policy import CONFLICT_RETRIES, RunResult, run
from schwab_tokens.settings import DEFAULT_LEASE_TTL, DEFAULT_REFRESH_MARGIN
from schwab_tokens.token import REFRESH_TOKEN_LIFETIME, Token
from tests.fakes import FakeClock, FakeEndpoint, FakeStore, token_at

LIFETIME = 1800


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> FakeStore:
    return FakeStore(clock)


@pytest.fixture
def schwab(clock: FakeClock) -> FakeEndpoint:
    return FakeEndpoint(clock, lifetime=LIFETIME)


def logged_in(store: FakeStore, left: float) -> Token:
    """The store holds a login's token with ``left`` seconds on its access token."""
    token = token_at(store.clock, left=left)
    store.put(token, writer="login")
    return token


def refreshed_elsewhere(store: FakeStore, left: float) -> Token:
    """What another writer (schwab-py in a bot, a second refresher) stores: the same login,
    a new access token with ``left`` seconds to live."""
    current = store.token
    return Token(
        current.creation_timestamp,
        {
            **current.token,
            "access_token": f"AT-theirs-{left}",
            "expires_at": int(store.clock() + left),
        },
    )


def refresh(store: FakeStore, schwab: FakeEndpoint, **options: object) -> RunResult:
    return run(store, schwab.factory, clock=store.clock, sleep=store.clock.advance, **options)  # type: ignore[arg-type]


def assert_refreshed_from(result: RunResult, store: FakeStore, before: Token) -> None:
    """A refresh as users rely on it: the login and refresh token kept, a new access token with
    Schwab's full lifetime, stored by a write conditional on the version it replaced."""
    assert result.outcome == Outcome.REFRESHED and result.exit_code == ExitCode.OK
    stored = store.token
    assert result.token == stored
    assert stored.creation_timestamp == before.creation_timestamp
    assert stored.refresh_token == before.refresh_token
    assert stored.access_token != before.access_token
    assert LIFETIME - 1 < stored.access_seconds_left(store.clock()) <= LIFETIME
    assert all(w.expected_version is not None for w in store.policy_writes)
    assert store.lease_holder is None  # released


# -- deciding ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("left", "due"), [(901, False), (900, False), (899, True), (-60, True)])
def test_refreshes_only_below_the_default_margin(
    store: FakeStore, schwab: FakeEndpoint, left: float, due: bool
) -> None:
    assert DEFAULT_REFRESH_MARGIN == 900
    before = logged_in(store, left)
    result = refresh(store, schwab)
    if due:
        assert_refreshed_from(result, store, before)
        assert schwab.calls == 1 and schwab.refresh_tokens == [before.refresh_token]
    else:
        assert result.outcome == Outcome.STILL_FRESH and result.exit_code == 0
        assert store.token == before and result.token == before
        assert result.access_seconds_left == left


def test_a_fresh_token_costs_one_read_and_no_credentials(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    logged_in(store, 1200)
    result = refresh(store, schwab, margin=600)
    assert result.outcome == Outcome.STILL_FRESH
    # Loading the app credentials is a Secrets Manager or SSM call in Lambda: not for this.
    assert schwab.factory_calls == 0 and schwab.calls == 0
    assert store.reads == 1 and store.leases_taken == 0 and store.writes[1:] == []


def test_a_forced_run_refreshes_a_fresh_token(store: FakeStore, schwab: FakeEndpoint) -> None:
    before = logged_in(store, 1700)
    result = refresh(store, schwab, force=True)
    assert_refreshed_from(result, store, before)
    assert schwab.calls == 1 and store.leases_taken == 1


def test_a_forced_run_keeps_what_another_writer_stored_while_it_waited(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    logged_in(store, 1700)
    store.hold_lease()
    theirs = refreshed_elsewhere(store, 1800)
    store.while_waiting = [lambda: None, lambda: store.put(theirs)]
    result = refresh(store, schwab, force=True)
    assert result.outcome == Outcome.STILL_FRESH and result.token == theirs
    assert store.token == theirs
    assert schwab.calls == 0 and schwab.factory_calls == 0
    assert store.leases_abandoned == 1 and store.leases_taken == 0


def test_schwab_is_given_the_time_left_on_the_lease(store: FakeStore, schwab: FakeEndpoint) -> None:
    """The token call is told how long the lease still runs, so its retries stop in time."""
    logged_in(store, 800)
    schwab.factory_seconds = 30.0  # loading the credentials took a while
    refresh(store, schwab, lease_ttl=120.0)
    (left,) = schwab.time_left
    assert 0 < left <= 120.0 - 30.0


# -- writing, and the other writers -------------------------------------------------------------
def test_a_lost_write_answer_is_still_refreshed(store: FakeStore, schwab: FakeEndpoint) -> None:
    """The write landed but its answer was lost and the retry refused: the run finds its own
    document in the store and reports ``refreshed`` (what the alarms count)."""
    before = logged_in(store, 800)
    store.lose_next_write_answer = True
    result = refresh(store, schwab)
    assert_refreshed_from(result, store, before)
    assert schwab.calls == 1
    assert [w.landed for w in store.policy_writes] == [True]


def test_a_fresh_token_another_writer_stored_during_the_call_is_kept(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    logged_in(store, 800)
    theirs = refreshed_elsewhere(store, LIFETIME)  # as fresh as ours will be
    schwab.during_call = [lambda: store.put(theirs)]
    result = refresh(store, schwab)
    assert result.outcome == Outcome.STILL_FRESH and result.ok
    assert store.token == theirs and result.token == theirs
    assert schwab.calls == 1
    assert [w.landed for w in store.policy_writes] == [False]


@pytest.mark.parametrize("their_left", [60, 1500], ids=["stale", "fresh-but-older"])
def test_ours_is_written_over_an_older_token_another_writer_stored(
    store: FakeStore, schwab: FakeEndpoint, their_left: float
) -> None:
    """Never throw away the fresher token only because another writer won the race: ours
    expires later, so it replaces theirs, conditionally on the version they wrote."""
    before = logged_in(store, 800)
    theirs = refreshed_elsewhere(store, their_left)
    their_version: list[str] = []
    schwab.during_call = [lambda: their_version.append(store.put(theirs))]
    result = refresh(store, schwab)
    assert_refreshed_from(result, store, before)
    assert schwab.calls == 1
    first, second = store.policy_writes
    assert not first.landed
    assert second.landed and second.expected_version == their_version[0]


@pytest.mark.parametrize(
    ("login_left", "outcome"),
    [(1000, Outcome.STILL_FRESH), (300, Outcome.FAILED)],
    ids=["fresh-login", "login-already-due"],
)
def test_a_newer_login_stored_meanwhile_always_wins(
    store: FakeStore, schwab: FakeEndpoint, login_left: float, outcome: Outcome
) -> None:
    """A login (``creation_timestamp`` later than ours) is kept even though our refreshed token
    expires later; if it is not fresh either, the run fails (temporary) and overwrites nothing."""
    logged_in(store, 800)
    store.clock.advance(60)
    new_login = token_at(store.clock, login=store.clock(), left=login_left, refresh="RT-login-2")
    schwab.during_call = [lambda: store.put(new_login, writer="login")]
    result = refresh(store, schwab)
    assert result.outcome == outcome
    assert store.token == new_login
    if outcome == Outcome.FAILED:
        assert isinstance(result.error, errors.TemporaryFailure) and result.temporary
        assert "changed while refreshing" in str(result.error)
        assert result.exit_code == ExitCode.TEMPORARY
    assert [w.landed for w in store.policy_writes] == [False]


def test_a_writer_that_keeps_winning_ends_in_a_temporary_failure(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    logged_in(store, 800)
    stale = [refreshed_elsewhere(store, 60 + n) for n in range(CONFLICT_RETRIES + 1)]
    store.before_write = [lambda t=t: store.put(t) for t in stale]  # type: ignore[misc]
    result = refresh(store, schwab)
    assert result.outcome == Outcome.FAILED
    assert isinstance(result.error, WriteConflict) and result.temporary
    assert store.token == stale[-1]
    assert [w.landed for w in store.policy_writes] == [False] * (CONFLICT_RETRIES + 1)
    assert schwab.calls == 1


# -- the lease -----------------------------------------------------------------------------------
def test_a_waiter_stops_queueing_once_the_holder_wrote(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    logged_in(store, 800)
    store.hold_lease()
    theirs = refreshed_elsewhere(store, LIFETIME)
    store.while_waiting = [lambda: None, lambda: store.put(theirs)]  # it stays holding the lease
    started = store.clock()
    result = refresh(store, schwab, lease_wait=60)
    assert result.outcome == Outcome.STILL_FRESH and result.token == theirs
    assert schwab.calls == 0 and schwab.factory_calls == 0
    assert store.leases_abandoned == 1
    assert store.clock() - started < 5  # not the whole 60 s wait


def test_a_waiter_queues_again_when_the_holder_wrote_no_fresh_token(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    before = logged_in(store, 800)
    store.hold_lease()
    stale = refreshed_elsewhere(store, 300)
    their_version: list[str] = []
    store.while_waiting = [
        lambda: their_version.append(store.put(stale)),  # not fresh: the waiter queues again
        lambda: None,
        store.release_lease,
    ]
    result = refresh(store, schwab)
    assert_refreshed_from(result, store, before)
    assert schwab.calls == 1 and store.leases_abandoned == 1 and store.leases_taken == 1
    assert [w.expected_version for w in store.policy_writes] == their_version


def test_a_lease_nobody_releases_is_waited_for_then_reported(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    before = logged_in(store, 800)
    store.hold_lease(ttl=3600)
    started = store.clock()
    result = refresh(store, schwab, lease_wait=60)
    assert result.outcome == Outcome.FAILED
    assert isinstance(result.error, LeaseBusy) and result.exit_code == ExitCode.TEMPORARY
    assert 60 <= store.clock() - started < 62
    assert schwab.calls == 0 and store.token == before


def test_a_dead_holders_lease_is_taken_after_its_ttl(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    before = logged_in(store, 800)
    store.hold_lease(ttl=30)  # ... and the holder crashed
    result = refresh(store, schwab, lease_wait=60)
    assert_refreshed_from(result, store, before)
    assert schwab.calls == 1


def test_a_lease_lost_before_the_call_calls_nobody_and_writes_nothing(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    before = logged_in(store, 800)
    # The re-read under the lease stalls past the lease's safe lifetime (ttl minus slack).
    store.on_read[2] = lambda: store.clock.advance(DEFAULT_LEASE_TTL - 5)
    result = refresh(store, schwab, lease_ttl=DEFAULT_LEASE_TTL)
    assert result.outcome == Outcome.FAILED
    assert isinstance(result.error, LeaseLost) and result.temporary
    assert "did not call Schwab" in str(result.error)
    assert schwab.calls == 0
    assert store.policy_writes == [] and store.token == before


def test_a_slow_credentials_load_past_the_lease_calls_nobody(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    """Loading the app credentials (AWS calls) comes before the last lease check, so a load
    that outlives the lease cannot lead to a call Schwab gets from two holders."""
    before = logged_in(store, 800)
    schwab.factory_seconds = DEFAULT_LEASE_TTL - 5
    result = refresh(store, schwab, lease_ttl=DEFAULT_LEASE_TTL)
    assert isinstance(result.error, LeaseLost) and "did not call Schwab" in str(result.error)
    assert schwab.factory_calls == 1 and schwab.calls == 0
    assert store.policy_writes == [] and store.token == before


def test_a_lease_lost_during_the_call_writes_nothing(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    before = logged_in(store, 800)
    raw = store.raw
    schwab.seconds = 115  # Schwab answers after the lease's safe lifetime
    result = refresh(store, schwab, lease_ttl=120)
    assert result.outcome == Outcome.FAILED
    assert isinstance(result.error, LeaseLost) and result.exit_code == ExitCode.TEMPORARY
    assert "did not store the new token" in str(result.error)
    assert schwab.calls == 1
    assert store.policy_writes == [] and store.raw == raw and store.token == before


# -- failures ------------------------------------------------------------------------------------
def test_a_dead_login_asks_for_a_login_without_calling_schwab(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    now = store.clock()
    dead = token_at(store.clock, login=now - REFRESH_TOKEN_LIFETIME - 60, left=-3600)
    store.put(dead, writer="login")
    raw = store.raw
    result = refresh(store, schwab, force=True)
    assert result.outcome == Outcome.REAUTH_REQUIRED
    assert (
        isinstance(result.error, errors.LoginRequired)
        and result.exit_code == ExitCode.LOGIN_REQUIRED
    )
    assert "schwab-tokens login" in str(result.error)
    assert schwab.calls == 0 and schwab.factory_calls == 0
    assert store.raw == raw and result.token == dead  # reported: hours left, fingerprint
    assert result.refresh_hours_left is not None and result.refresh_hours_left < 0


def test_a_fresh_token_of_a_login_past_its_7_days_is_not_still_fresh(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    """The last access token still works for minutes, but the login is over: say so (exit 3)
    and how long the bots keep working, instead of "still fresh"."""
    now = store.clock()
    token = token_at(store.clock, login=now - REFRESH_TOKEN_LIFETIME - 60, left=1500)
    store.put(token, writer="login")
    result = refresh(store, schwab)
    assert result.outcome == Outcome.REAUTH_REQUIRED and result.exit_code == 3
    assert "still works for 25 min" in str(result.error)
    assert f"schwab-tokens login --store {store.url}" in str(result.error)
    assert schwab.calls == 0 and result.token == token


def test_a_refresh_token_refused_with_days_left_was_replaced_by_another_login(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    """Schwab keeps one login per app: a dead-token verdict while the login has days left
    means another login (another tool, a second ``login``) replaced this one: say so."""
    logged_in(store, 800)
    raw = store.raw
    schwab.failures = [RefreshTokenRejected("Schwab refused the refresh token (400 invalid_grant)")]
    result = refresh(store, schwab)
    assert result.outcome == Outcome.REAUTH_REQUIRED and result.exit_code == 3
    assert isinstance(result.error, LoginReplaced)
    assert "another login to this app replaced this one" in str(result.error)
    assert "still works for 13 min" in str(result.error)
    assert store.raw == raw


def test_a_refresh_token_refused_near_the_end_of_its_7_days_is_not_replaced(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    now = store.clock()
    store.put(token_at(store.clock, login=now - REFRESH_TOKEN_LIFETIME + 600, left=800))
    schwab.failures = [RefreshTokenRejected("Schwab refused the refresh token (400 invalid_grant)")]
    result = refresh(store, schwab)
    assert result.outcome == Outcome.REAUTH_REQUIRED
    assert not isinstance(result.error, LoginReplaced)
    assert "(7 days)" in str(result.error)


def test_a_login_that_lands_seconds_after_the_refusal_is_waited_for(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    """The phone's login killed our refresh token at Schwab and stores its token a few seconds
    later: the run waits for it instead of reporting "replaced by another login"."""
    logged_in(store, 800)
    newer = token_at(store.clock, login=store.clock() + 1, left=1800, refresh="RT-login-0002")
    schwab.failures = [RefreshTokenRejected("Schwab refused the refresh token (400 invalid_grant)")]
    store.on_read[store.reads + 4] = lambda: store.put(newer, writer="login")
    result = refresh(store, schwab)
    assert result.outcome == Outcome.STILL_FRESH and result.token == newer


def test_a_refusal_caused_by_a_login_stored_meanwhile_is_no_failure(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    """The login that killed our refresh token is in the store by now: it is the token."""
    logged_in(store, 800)
    newer = token_at(store.clock, login=store.clock() + 1, left=1800, refresh="RT-login-0002")
    schwab.during_call = [lambda: store.put(newer, writer="login")]
    schwab.failures = [RefreshTokenRejected("Schwab refused the refresh token (400 invalid_grant)")]
    result = refresh(store, schwab)
    assert result.outcome == Outcome.STILL_FRESH and result.ok
    assert result.token == newer and store.token == newer


def test_no_token_asks_for_a_login(store: FakeStore, schwab: FakeEndpoint) -> None:
    result = refresh(store, schwab)
    assert result.outcome == Outcome.REAUTH_REQUIRED
    assert f"no token at {store.url}" in str(result.error)
    assert schwab.calls == 0 and store.raw is None


@pytest.mark.parametrize(
    "answer",
    [
        {"token_type": "Bearer", "expires_in": 1800},
        {"access_token": "", "expires_in": 1800},
        {"access_token": "A" * 3000, "expires_in": 1800},
        {"access_token": "caf\u00e9", "expires_in": 1800},
        {"access_token": 12345, "expires_in": 1800},
        ["not", "an", "object"],
    ],
    ids=["no-access-token", "empty", "too-long", "not-ascii", "not-text", "not-an-object"],
)
def test_a_bad_answer_changes_nothing(
    store: FakeStore, schwab: FakeEndpoint, answer: object
) -> None:
    before = logged_in(store, 800)
    raw = store.raw
    schwab.answer = answer
    result = refresh(store, schwab)
    assert result.outcome == Outcome.FAILED
    assert isinstance(result.error, InvalidTokenAnswer)
    assert result.exit_code == ExitCode.TEMPORARY and result.temporary
    assert "untouched" in str(result.error)
    assert store.raw == raw and store.token == before and store.policy_writes == []


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (
            errors.LoginRequired("Schwab refused the refresh token (400)"),
            Outcome.REAUTH_REQUIRED,
            3,
        ),
        (BadAppCredentials("Schwab rejected the app key or secret (401)"), Outcome.FAILED, 5),
        (errors.TemporaryFailure("Schwab answered 503"), Outcome.FAILED, 4),
    ],
    ids=["dead-refresh-token", "wrong-app-secret", "schwab-down"],
)
def test_schwabs_refusals_change_nothing(
    store: FakeStore, schwab: FakeEndpoint, error: SchwabTokensError, outcome: Outcome, code: int
) -> None:
    logged_in(store, 800)
    raw = store.raw
    schwab.failures = [error]
    result = refresh(store, schwab)
    assert result.outcome == outcome and result.exit_code == code
    assert result.error is error
    assert store.raw == raw and store.policy_writes == []
    assert store.lease_holder is None  # released on the way out


# -- the access view -------------------------------------------------------------------------------
def test_a_refresh_writes_the_view_after_the_token(store: FakeStore, schwab: FakeEndpoint) -> None:
    logged_in(store, 800)
    result = refresh(store, schwab)
    assert result.outcome == Outcome.REFRESHED and result.view == "written"
    view = store.view.stored
    assert view is not None and view == AccessView.from_token(store.token)
    assert "refresh_token" not in view.to_json().decode()
    assert store.token.refresh_token not in view.to_json().decode()


@pytest.mark.parametrize("damage", ["missing", "older", "another-login"])
def test_a_still_fresh_run_repairs_a_missing_or_stale_view(
    store: FakeStore, schwab: FakeEndpoint, damage: str
) -> None:
    token = logged_in(store, 1500)
    if damage != "missing":
        older = token_at(
            store.clock, left=600, login=token.creation_timestamp - 10 * (damage == "another-login")
        )
        store.view.stored = AccessView.from_token(older)
    result = refresh(store, schwab)
    assert result.outcome == Outcome.STILL_FRESH and result.view == "written"
    assert store.view.stored == AccessView.from_token(token)
    assert schwab.calls == 0
    assert refresh(store, schwab).view == "current"  # and then it is left alone
    assert store.view.puts == 1


def test_a_view_never_goes_back_to_an_older_token(store: FakeStore, schwab: FakeEndpoint) -> None:
    """A newer token's view (another writer, after this run read the store) is never replaced
    by this run's older one."""
    token = logged_in(store, 1500)
    newer = token_at(store.clock, left=1800, login=token.creation_timestamp)
    store.view.stored = AccessView.from_token(newer)
    assert refresh(store, schwab).view == "current"
    assert store.view.stored == AccessView.from_token(newer)


@pytest.mark.parametrize(
    "failure",
    [
        errors.TemporaryFailure("Schwab answered 503"),
        BadAppCredentials("Schwab rejected the app key or secret (401)"),
    ],
    ids=["schwab-down", "wrong-secret"],
)
def test_a_failed_run_writes_no_view(
    store: FakeStore, schwab: FakeEndpoint, failure: SchwabTokensError
) -> None:
    logged_in(store, 800)
    schwab.failures = [failure]
    assert not refresh(store, schwab).ok
    assert store.view.stored is None and store.view.puts == 0
    assert "over" not in store.read_notes()[0]


def test_a_dead_login_marks_the_view_and_the_notes_until_a_refresh_works(
    store: FakeStore, schwab: FakeEndpoint
) -> None:
    """Schwab's verdict on the refresh token is noted where every reader looks: the notes
    (status, doctor) and the view's login_required (bots). A run that merely finds the token
    fresh keeps the mark; only a refresh of that login takes it back."""
    token = logged_in(store, 800)
    schwab.failures = [RefreshTokenRejected("Schwab refused the refresh token (400 invalid_grant)")]
    assert refresh(store, schwab).outcome == Outcome.REAUTH_REQUIRED
    assert store.view.stored == AccessView.from_token(token, login_required=True)
    assert store.read_notes()[0] == {"login": token.creation_timestamp, "over": 1}
    assert store.token == token  # the token itself is untouched

    assert refresh(store, schwab, force=False, margin=0).outcome == Outcome.STILL_FRESH
    assert store.view.stored is not None and store.view.stored.login_required

    assert refresh(store, schwab).outcome == Outcome.REFRESHED
    assert store.view.stored is not None and not store.view.stored.login_required
    assert store.read_notes()[0] == {"login": token.creation_timestamp}


def test_a_bad_answer_never_reaches_the_view(store: FakeStore, schwab: FakeEndpoint) -> None:
    logged_in(store, 800)
    schwab.answer = {"access_token": "caf\u00e9", "expires_in": 1800}
    assert refresh(store, schwab).outcome == Outcome.FAILED
    assert store.view.stored is None
