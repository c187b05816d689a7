"""Login tickets and the OAuth state bound to them: unforgeable, bound, expiring."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schwab_tokens import tickets
from schwab_tokens.tickets import TicketError

KEY = tickets.ticket_key("an-app-secret-of-the-owner")
URL = "s3://bucket-a/schwab/tokens.json"
NOW = 1_800_000_000.0


def test_a_minted_ticket_verifies_for_its_store_and_login() -> None:
    text = tickets.mint(KEY, URL, login=1234, now=NOW)
    ticket = tickets.verify(KEY, text, URL, NOW + 60)
    assert ticket.login == 1234
    assert ticket.expires == NOW + tickets.DEFAULT_VALID_SECONDS


def test_two_tickets_differ_and_say_nothing_readable_about_the_store() -> None:
    one, two = (tickets.mint(KEY, URL, 1, NOW) for _ in range(2))
    assert one != two
    assert "bucket-a" not in one and "schwab" not in one


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "expired"),
        ("other_store", "other_store"),
        ("other_key", "invalid"),
        ("altered_payload", "invalid"),
        ("cut_short", "invalid"),
        ("empty", "invalid"),
    ],
)
def test_unusable_tickets_are_refused_with_their_reason(case: str, reason: str) -> None:
    text = tickets.mint(KEY, URL, 1, NOW, valid=3600)
    store, key, now = URL, KEY, NOW + 10
    if case == "expired":
        now = NOW + 3600
    elif case == "other_store":
        store = "s3://bucket-b/schwab/tokens.json"
    elif case == "other_key":
        key = tickets.ticket_key("another app secret")
    elif case == "altered_payload":
        payload, mac = text.split(".")
        text = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    elif case == "cut_short":
        text = text[:-5]
    else:
        text = ""
    with pytest.raises(TicketError) as caught:
        tickets.verify(key, text, store, now)
    assert caught.value.reason == reason


def test_the_state_binds_the_ticket_to_the_browser_nonce() -> None:
    text = tickets.mint(KEY, URL, 7, NOW)
    nonce = tickets.new_nonce(NOW)
    state = tickets.state_for(KEY, text, nonce)
    assert tickets.looks_like_state(state)
    assert tickets.verify_state(KEY, state, nonce, URL, NOW).login == 7
    for other in (tickets.new_nonce(NOW), None, ""):
        with pytest.raises(TicketError) as caught:
            tickets.verify_state(KEY, state, other, URL, NOW)
        assert caught.value.reason == "browser"


def test_a_sign_in_ends_within_15_minutes_even_with_a_stolen_cookie_and_state() -> None:
    text = tickets.mint(KEY, URL, 7, NOW)  # the ticket itself is valid for 24 hours
    nonce = tickets.new_nonce(NOW)
    state = tickets.state_for(KEY, text, nonce)
    assert tickets.verify_state(KEY, state, nonce, URL, NOW + tickets.SIGN_IN_SECONDS).login == 7
    assert tickets.verify_state(KEY, state, nonce, URL, NOW - 30).login == 7  # clock skew
    for later in (NOW + tickets.SIGN_IN_SECONDS + 1, NOW + 3600, NOW - 120):
        with pytest.raises(TicketError) as caught:
            tickets.verify_state(KEY, state, nonce, URL, later)
        assert caught.value.reason == "slow"
    # The time is inside the MACed nonce: moving it forward breaks the state.
    moved = f"{int(NOW + 3600)}-{nonce.partition('-')[2]}"
    with pytest.raises(TicketError) as caught:
        tickets.verify_state(KEY, state, moved, URL, NOW + 3600)
    assert caught.value.reason == "browser"


def test_what_no_key_could_make_usable_is_refused_without_the_key() -> None:
    """``precheck`` and ``precheck_state`` take no key: the hosted login runs them before it
    reads the app credentials. A forged ticket of the right form passes them: only the
    signature (with the key) can refuse it."""
    text = tickets.mint(KEY, URL, 7, NOW, valid=3600)
    for bad, reason in (("", "invalid"), ("AAAA.BBBB", "invalid"), (text + "\n", "invalid")):
        with pytest.raises(TicketError) as caught:
            tickets.precheck(bad, NOW)
        assert caught.value.reason == reason
    with pytest.raises(TicketError) as caught:
        tickets.precheck(text, NOW + 3600)
    assert caught.value.reason == "expired"
    forged = tickets.mint(tickets.ticket_key("a guess"), URL, 7, NOW)
    tickets.precheck(forged, NOW)
    nonce = tickets.new_nonce(NOW)
    state = tickets.state_for(KEY, text, nonce)
    tickets.precheck_state(state, nonce, NOW)
    for cookie, now, reason in (
        (None, NOW, "browser"),
        ("not-a-nonce", NOW, "browser"),
        (nonce + "\n", NOW, "browser"),
        (nonce, NOW + tickets.SIGN_IN_SECONDS + 1, "slow"),
    ):
        with pytest.raises(TicketError) as caught:
            tickets.precheck_state(state, cookie, now)
        assert caught.value.reason == reason


def test_another_store_is_named_only_for_a_ticket_that_verifies() -> None:
    """Before the MAC, "another store" would confirm a stranger's guess of the store URL."""
    other = "s3://bucket-b/schwab/tokens.json"
    forged = tickets.mint(tickets.ticket_key("a guess"), other, 7, NOW)
    with pytest.raises(TicketError) as caught:
        tickets.verify(KEY, forged, URL, NOW)
    assert caught.value.reason == "invalid"
    with pytest.raises(TicketError) as caught:
        tickets.verify(KEY, tickets.mint(KEY, other, 7, NOW), URL, NOW)
    assert caught.value.reason == "other_store"


def test_a_cli_state_does_not_look_like_ours() -> None:
    assert not tickets.looks_like_state("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA")
    assert not tickets.looks_like_state(None)


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("90m", 5400), ("2d", 172800), ("3600", 3600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert tickets.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["73h", "0", "4d", "soon", "", "-1h", "1e9"])
def test_durations_out_of_range_or_malformed_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        tickets.parse_duration(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_no_random_text_is_ever_a_valid_ticket(text: str) -> None:
    with pytest.raises(TicketError):
        tickets.verify(KEY, text, URL, NOW)
    with pytest.raises(TicketError):
        tickets.verify_state(KEY, text, "nonce", URL, NOW)


def test_the_documented_windows_are_the_codes() -> None:
    """docs/weekly-login.md promises a link valid once for 24 hours and 15 minutes from opening
    it to coming back from Schwab: the numbers are pinned here, not only named."""
    assert tickets.DEFAULT_VALID_SECONDS == 24 * 3600
    assert tickets.SIGN_IN_SECONDS == 15 * 60
