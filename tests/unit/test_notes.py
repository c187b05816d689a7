"""The notes beside a token fit every store, and a note that would not is refused in time.

The largest notes are made by the code that writes them (a login's account fingerprint of
more accounts than it keeps, refreshes failing for long enough to be said, a login found over,
a forced refresh's mark, at the largest times a token may carry), then written to the four
stores: a file, S3 and Secrets Manager (on moto), and the tests' in-memory store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.user import login
from schwab_tokens.errors import LoginRequired, NotesTooLarge, Outcome, TemporaryFailure
from schwab_tokens.lambdas.refresher import forced_mark
from schwab_tokens.login_flow import record_login
from schwab_tokens.notes import FORCED, failing, login_over, normalized, with_verdict
from schwab_tokens.notify import FAILING_AFTER_SECONDS, next_notes
from schwab_tokens.policy import RunResult
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.stores.base import MAX_NOTES_BYTES, encode_notes
from tests.fakes import FakeStore
from tests.helpers import make_token

#: The largest epoch seconds a token document may carry (token.py's plausible range).
LATEST = 10**12


def largest_notes(emulator) -> dict:
    emulator.login_as([f"{n:08d}" for n in range(1, 21)])  # more than a login's notes keep
    scratch = FakeStore()
    login(scratch, emulator)  # the real login: it notes the accounts it linked
    account = scratch.read_notes()[0]["account"]
    token = make_token("largest", now=LATEST - 2 * 86400)
    store = FakeStore()
    record_login(store, token, account)
    notes = store.read_notes()[0]

    def run(outcome: Outcome, at: float) -> RunResult:
        error = TemporaryFailure("down") if outcome == Outcome.FAILED else None
        if outcome == Outcome.REAUTH_REQUIRED:
            error = LoginRequired("refused")
        return RunResult("s3://b/k", outcome, token=token, error=error, checked_at=at)

    at = float(LATEST - 86400)
    for outcome, later in (
        (Outcome.FAILED, 0),
        (Outcome.FAILED, FAILING_AFTER_SECONDS),
        (Outcome.REAUTH_REQUIRED, FAILING_AFTER_SECONDS + 300),
    ):
        notes, _ = next_notes(notes, run(outcome, at + later), at + later)
    notes[FORCED] = forced_mark("a Lambda request id")
    assert set(notes) == {"login", "account", "failing", "sent", "over", "forced"}
    return notes


@pytest.fixture(params=["file", "s3", "secretsmanager", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TokenStore]:
    if request.param == "memory":
        return lambda: FakeStore()
    if request.param == "file":
        return lambda: store_from_url(str(tmp_path / "tokens.json"))
    request.getfixturevalue("moto_aws")
    if request.param == "s3":
        from schwab_tokens import aws

        aws.client("s3").create_bucket(Bucket="notes-bucket")
        return lambda: store_from_url("s3://notes-bucket/schwab/tokens.json")
    return lambda: store_from_url("secretsmanager://schwab-tokens/notes")


def test_the_largest_notes_fit_every_store(emulator, any_store) -> None:
    notes = largest_notes(emulator)
    assert len(encode_notes(notes)) <= MAX_NOTES_BYTES
    store = any_store()
    store.write(make_token("current"), None)  # Secrets Manager keeps notes beside a version
    version = store.write_notes(notes, None)
    assert store.read_notes() == (notes, version)


def test_notes_over_the_limit_are_refused_before_any_store_call(any_store) -> None:
    store = any_store()
    store.write(make_token("current"), None)
    too_large = {"login": 1, "account": "x" * MAX_NOTES_BYTES}
    with pytest.raises(NotesTooLarge, match=f"{MAX_NOTES_BYTES}"):
        store.write_notes(too_large, None)
    assert store.read_notes() == ({}, None)


def test_a_verdict_is_noted_for_its_own_login_only() -> None:
    token = make_token("t", now=1_900_000_000)
    over = with_verdict({}, token, Outcome.REAUTH_REQUIRED)
    assert over == {"login": token.creation_timestamp, "over": 1} and login_over(over, token)
    assert with_verdict(over, token, Outcome.STILL_FRESH) is over  # fresh proves nothing
    assert with_verdict(over, token, Outcome.REFRESHED) == {"login": token.creation_timestamp}
    newer = {"login": token.creation_timestamp + 60, "account": "k:AAAA"}
    assert with_verdict(newer, token, Outcome.REAUTH_REQUIRED) is newer
    assert not login_over(newer, token)


def test_older_notes_are_read_in_todays_form() -> None:
    """What a version before this one noted: its failing pair becomes one key, so old keys
    never pile up beside new ones (and past the limit)."""
    old = {"login": 5, "failing_since": 1_900_000_000, "failing_sent": True, "sent": "x"}
    assert normalized(old) == {"login": 5, "failing": [1_900_000_000, True], "sent": "x"}


@pytest.mark.parametrize("since", [10**300, -5, 1e13, "1900000000", True, None])
def test_a_failing_time_no_token_could_carry_is_no_time(since: object) -> None:
    """Notes are read from the store, which others may write: an absurd "failing since" is
    ignored (doctor and the notices never format it), not a crash."""
    assert failing({"login": 5, "failing": [since, True]}) is None
    assert failing({"login": 5, "failing": [1_900_000_000, True]}) == (1_900_000_000.0, True)
