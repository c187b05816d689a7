"""Notifications: one message per state change of a token, across a simulated week.

The policy (``next_notes``) is pure, so a week of 5-minute runs is simulated in memory; the
driver (``notify``) runs against a real file store, whose notes are compare-and-swapped like the
token, with several runs racing and a publisher that fails.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from schwab_tokens.errors import LoginRequired, Outcome, TemporaryFailure
from schwab_tokens.notify import FAILING_AFTER_SECONDS, Kind, Notice, next_notes, notify
from schwab_tokens.policy import RunResult
from schwab_tokens.stores.file import FileStore
from schwab_tokens.token import REFRESH_TOKEN_LIFETIME, Token

T0 = 1_800_000_000
DAY = 86400
STEP = 300


def token(login: float, now: float) -> Token:
    return Token(
        int(login),
        {
            "access_token": "a" * 40,
            "refresh_token": "r" * 40,
            "expires_in": 1800,
            "expires_at": int(now + 1800),
        },
    )


def result(login: float, now: float, outcome: Outcome = Outcome.STILL_FRESH) -> RunResult:
    error = None
    if outcome == Outcome.FAILED:
        error = TemporaryFailure("Schwab's token endpoint answered 503 after 4 tries")
    elif outcome == Outcome.REAUTH_REQUIRED:
        error = LoginRequired("Schwab refused the refresh token (400 invalid_grant)")
    return RunResult("s3://b/k", outcome, token=token(login, now), error=error, checked_at=now)


def week(outage: tuple[float, float], relogin_at: float) -> list[tuple[float, Kind]]:
    """Every 5 minutes for 14 days: one login at T0, a Schwab outage, the login dying after 7
    days, a new login an hour after that. Returns (time, kind) of every message."""
    notes: dict[str, object] = {}
    sent = []
    now = float(T0)
    while now < T0 + 14 * DAY:
        login = T0 if now < relogin_at else relogin_at
        if outage[0] <= now < outage[1]:
            outcome = Outcome.FAILED
        elif now - login >= REFRESH_TOKEN_LIFETIME:
            outcome = Outcome.REAUTH_REQUIRED
        else:
            outcome = Outcome.STILL_FRESH
        notes, kind = next_notes(notes, result(login, now, outcome), now)
        if kind is not None:
            sent.append((now, kind))
        now += STEP
    return sent


def test_a_week_sends_each_state_change_once() -> None:
    outage = (T0 + 2 * DAY, T0 + 2 * DAY + 3600)
    relogin = T0 + 7 * DAY + 3600
    sent = week(outage, relogin)
    kinds = [kind for _, kind in sent]
    assert kinds == [
        Kind.FAILING,
        Kind.RECOVERED,
        Kind.EXPIRING_24H,
        Kind.EXPIRING_2H,
        Kind.LOGIN_REQUIRED,
        # the new login's own warnings, six days later
        Kind.EXPIRING_24H,
        Kind.EXPIRING_2H,
    ]
    at = dict((kind, when) for when, kind in sent[:5])
    assert at[Kind.FAILING] - outage[0] == FAILING_AFTER_SECONDS
    assert at[Kind.RECOVERED] == outage[1]
    assert T0 + 6 * DAY < at[Kind.EXPIRING_24H] <= T0 + 6 * DAY + STEP
    assert T0 + 7 * DAY - 2 * 3600 < at[Kind.EXPIRING_2H] <= T0 + 7 * DAY - 2 * 3600 + STEP
    assert T0 + 7 * DAY <= at[Kind.LOGIN_REQUIRED] < T0 + 7 * DAY + STEP


def test_a_short_blip_is_not_news() -> None:
    sent = week((T0 + DAY, T0 + DAY + FAILING_AFTER_SECONDS - STEP), T0 + 7 * DAY + 3600)
    assert Kind.FAILING not in [kind for _, kind in sent]
    assert Kind.RECOVERED not in [kind for _, kind in sent]


def test_deployed_late_in_a_login_warns_once_at_the_current_level() -> None:
    now = T0 + 7 * DAY - 3600  # one hour left: straight to the 2-hour warning, once
    notes, kind = next_notes({}, result(T0, now), now)
    assert kind == Kind.EXPIRING_2H
    assert next_notes(notes, result(T0, now + STEP), now + STEP)[1] is None


def test_a_false_login_over_is_taken_back_and_the_real_end_still_announced() -> None:
    """A dead-token verdict that was wrong (the same login refreshes again afterwards): the
    user hears it works again, and the login's real end still gets its warnings."""
    now = T0 + 3 * DAY
    notes, kind = next_notes({}, result(T0, now, Outcome.REAUTH_REQUIRED), now)
    assert kind == Kind.LOGIN_REQUIRED and notes["over"] == 1
    # A token found fresh proves nothing about its login: still over, nothing said.
    notes, kind = next_notes(notes, result(T0, now + STEP), now + STEP)
    assert kind is None and notes["over"] == 1
    notes, kind = next_notes(notes, result(T0, now + 2 * STEP, Outcome.REFRESHED), now + 2 * STEP)
    assert kind == Kind.RECOVERED and "sent" not in notes and "over" not in notes
    later = T0 + 6 * DAY + 60
    notes, kind = next_notes(notes, result(T0, later), later)
    assert kind == Kind.EXPIRING_24H
    end = T0 + 7 * DAY + 60
    assert next_notes(notes, result(T0, end, Outcome.REAUTH_REQUIRED), end)[1] == (
        Kind.LOGIN_REQUIRED
    )


def test_a_run_never_rewrites_the_notes_of_a_newer_login() -> None:
    """A login landed after this run read the (older) token: its notes (the account it noted,
    its warnings) stay as they are, and the old token's state is no news."""
    newer = {"login": T0 + DAY, "account": "abcd1234:AAAA"}
    for outcome in Outcome:
        old_token_run = result(T0, T0 + DAY + 60, outcome)
        assert next_notes(newer, old_token_run, T0 + DAY + 60) == (newer, None)


def test_an_edge_outage_is_failing_and_recovered_never_login_over() -> None:
    """Schwab's edge answering HTML 400s for an hour on day 5 is a temporary failure: one
    "failing" after 30 minutes, one "recovered", and the login's own warnings as usual."""
    sent = week(outage=(T0 + 5 * DAY, T0 + 5 * DAY + 3600), relogin_at=T0 + 15 * DAY)
    kinds = [(kind, when) for when, kind in sent]
    assert [k for k, _ in kinds] == [
        Kind.FAILING,
        Kind.RECOVERED,
        Kind.EXPIRING_24H,
        Kind.EXPIRING_2H,
        Kind.LOGIN_REQUIRED,
    ]
    assert all(when >= T0 + 7 * DAY for k, when in kinds if k is Kind.LOGIN_REQUIRED)


def test_never_logged_in_sends_nothing() -> None:
    nothing = RunResult("s3://b/k", Outcome.REAUTH_REQUIRED, error=LoginRequired("no token"))
    assert next_notes({}, nothing, T0) == ({}, None)


# -- the driver, on a real store ------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "tokens.json")


def test_racing_runs_send_one_message(store: FileStore) -> None:
    now = T0 + 6 * DAY + 60
    sent: list[Notice] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def publish(notice: Notice) -> None:
        with lock:
            sent.append(notice)

    def one_run() -> None:
        barrier.wait()
        notify(store, "family", result(T0, now), publish, now=now)

    threads = [threading.Thread(target=one_run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [n.kind for n in sent] == [Kind.EXPIRING_24H]
    # A retry of the same run (Lambda retries a failed invocation) finds it already said.
    assert notify(store, "family", result(T0, now + 60), publish, now=now + 60) is None
    assert len(sent) == 1


def test_a_failed_publish_is_tried_again_next_run(store: FileStore) -> None:
    now = T0 + 6 * DAY + 60

    def broken(notice: Notice) -> None:
        raise TemporaryFailure("AWS answered ThrottlingException to sns:Publish")

    with pytest.raises(TemporaryFailure):
        notify(store, "family", result(T0, now), broken, now=now)
    sent: list[Notice] = []
    assert notify(store, "family", result(T0, now + STEP), sent.append, now=now + STEP) == (
        Kind.EXPIRING_24H
    )
    assert len(sent) == 1


def test_messages_say_what_when_and_what_to_do_without_secrets(store: FileStore) -> None:
    now = T0 + 6 * DAY + 60
    sent: list[Notice] = []
    link = "https://abc.lambda-url.us-east-1.on.aws/start?ticket=TICKET.MAC"
    notify(store, "family", result(T0, now), sent.append, login_link=lambda _t: link, now=now)
    (notice,) = sent
    assert notice.subject == "Schwab login 'family' ends in 23 h: log in again"
    assert len(notice.subject) <= 100
    assert "ends at" in notice.message and "UTC" in notice.message
    assert "stop getting access tokens" in notice.message
    assert link in notice.message and "schwab-tokens login --store" in notice.message
    assert "a" * 40 not in notice.message and "r" * 40 not in notice.message


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        (Kind.LOGIN_REQUIRED, "Schwab login 'family' is over: your bots have stopped"),
        (Kind.FAILING, "Schwab token 'family': refreshes failing for 30 min"),
        (Kind.RECOVERED, "Schwab token 'family' works again"),
    ],
)
def test_every_kind_has_a_lock_screen_subject(kind: Kind, subject: str) -> None:
    from schwab_tokens.notify import compose

    now = T0 + 7 * DAY + 60
    outcome = {Kind.LOGIN_REQUIRED: Outcome.REAUTH_REQUIRED, Kind.FAILING: Outcome.FAILED}
    run = result(T0, now, outcome.get(kind, Outcome.STILL_FRESH))
    notice = compose(kind, "family", "s3://b/k", run, now, None)
    assert notice.subject == subject
    assert "schwab-tokens" in notice.message or kind is Kind.RECOVERED


def test_a_login_replaced_by_another_says_so_and_how_to_avoid_it() -> None:
    from schwab_tokens.errors import LoginReplaced
    from schwab_tokens.notify import compose

    now = T0 + 2 * DAY
    replaced = RunResult(
        "s3://b/k",
        Outcome.REAUTH_REQUIRED,
        token=token(T0, now),
        error=LoginReplaced("another login to this app replaced this one"),
        checked_at=now,
    )
    command = "schwab-tokens login --store s3://b/k --credentials-secret ssm:/st/credentials"
    notice = compose(Kind.LOGIN_REQUIRED, "family", "s3://b/k", replaced, now, None, command)
    assert notice.subject == "Schwab login 'family' was replaced by another login: log in again"
    assert "another login to this app replaced this one" in notice.message
    assert "one login per app" in notice.message
    assert command in notice.message  # the command exactly as given, to run as printed


@pytest.mark.parametrize("kind", list(Kind))
def test_a_long_token_name_never_cuts_the_action_from_the_subject(kind: Kind) -> None:
    from schwab_tokens.notify import compose

    name = "n" * 64  # the longest name a manifest allows
    now = T0 + 7 * DAY + 60
    notice = compose(kind, name, "s3://b/k", result(T0, now, Outcome.FAILED), now, None)
    assert len(notice.subject) < 100 and notice.subject.isascii()  # SNS's limits
    assert notice.subject.endswith(("again", "stopped", "30 min"))
    assert name in notice.message  # the body still names it in full
