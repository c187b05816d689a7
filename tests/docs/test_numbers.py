"""The numbers the docs state are the numbers the code uses.

Each row names a phrase of a document, with ``{n}`` where the number stands, and the number the
code makes true there: a library constant, a CLI default or a template value, converted to the
document's unit. A row fails when the document says another number, when the phrase is gone
(reworded: update the row with the text), or when the constant changed without the document.
Words count as numbers too (``a day``, ``three 5-minute periods``, ``twice``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from devkit import REPO
from devkit.template import load_template
from schwab_tokens import credentials, health, notify, tickets
from schwab_tokens.commands import parser
from schwab_tokens.diagnosis import store as doctor_store
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.oauth.http import MAX_RETRY_AFTER
from schwab_tokens.policy import LEASE_WAIT_SECONDS
from schwab_tokens.reader import DEFAULT_REREAD_MARGIN
from schwab_tokens.settings import (
    DEFAULT_HTTP_RETRIES,
    DEFAULT_LEASE_TTL,
    DEFAULT_REFRESH_MARGIN,
    MAX_REFRESH_MARGIN,
    Settings,
)
from schwab_tokens.stores.base import safety
from schwab_tokens.stores.secretsmanager import NOTES_WAIT_SECONDS
from schwab_tokens.token import DEFAULT_EXPIRES_IN, REFRESH_TOKEN_LIFETIME

MINUTE, HOUR, DAY = 60, 3600, 86400
_NUMBER = r"(\d+(?:,\d{3})*(?:\.\d+)?|a|one|two|three|twice)"
_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "twice": 2}


@dataclass(frozen=True)
class Pin:
    """``phrase`` in ``doc`` (whitespace as in a rendered paragraph) states ``numbers``, in
    order, one per ``{n}``; ``source`` names where the code keeps them (for the message)."""

    doc: str
    phrase: str
    numbers: tuple[float, ...]
    source: str

    @property
    def id(self) -> str:
        return f"{self.doc}: {self.phrase[:60]}"


def pins(numbers: float | tuple[float, ...], source: str, *places: tuple[str, str]) -> list[Pin]:
    """One row per ``(doc, phrase)`` that states ``numbers`` (one per ``{n}``) from ``source``."""
    stated = numbers if isinstance(numbers, tuple) else (numbers,)
    return [Pin(doc, phrase, stated, source) for doc, phrase in places]


def _oauth() -> SchwabOAuth:
    """The token endpoint's client with the default settings (its timeouts and retries)."""
    return SchwabOAuth.from_settings("key", "secret", Settings())


def _retry() -> Any:
    """The urllib3 ``Retry`` the default client's calls run under (backoff and ``Retry-After``
    caps)."""
    return _oauth()._http.retry()


def _resource(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = load_template()["Resources"][name]["Properties"]
    return properties


REFRESHER = _resource("RefresherFunction")
INVOKE = REFRESHER["EventInvokeConfig"]
ERRORS_ALARM = _resource("RefresherErrorsAlarm")
SILENCE_ALARM = _resource("RefresherNotRunningAlarm")
SILENCE = SILENCE_ALARM["Period"] * SILENCE_ALARM["EvaluationPeriods"]
CLI = parser()
WATCH_INTERVAL = float(CLI.parse_args(["watch"]).interval)
LINK_VALID = tickets.parse_duration(CLI.parse_args(["login-link"]).valid)
THRESHOLDS = notify._THRESHOLDS  # the login's notices: each kind's time before the end

README, HOW, START, CLI_MD, LOCAL = (
    "README.md",
    "docs/how-it-works.md",
    "docs/getting-started.md",
    "docs/cli.md",
    "docs/local-use.md",
)
READING, SECURITY, WEEKLY, EMAILS = (
    "docs/reading-the-token.md",
    "docs/security.md",
    "docs/weekly-login.md",
    "docs/emails.md",
)
PINS = [
    # Schwab's lifetimes, as the code assumes them.
    *pins(
        DEFAULT_EXPIRES_IN / MINUTE,
        "token.DEFAULT_EXPIRES_IN",
        (README, "{n}-minute access token"),
        (HOW, "an **access token** lives {n} minutes"),
        (READING, "{n} minutes of API access"),
        (SECURITY, "for at most {n} minutes"),
        (SECURITY, "at most **{n} minutes**"),
    ),
    *pins(DEFAULT_EXPIRES_IN, "token.DEFAULT_EXPIRES_IN", (HOW, "With an access token of {n} s")),
    *pins(
        REFRESH_TOKEN_LIFETIME / DAY,
        "token.REFRESH_TOKEN_LIFETIME",
        (README, "before Schwab's {n}-day login"),
        (README, "Schwab ends every login after {n} days"),
        (HOW, "new access tokens until {n} days after the login"),
        (START, "Schwab ends a login {n} days after you logged in"),
        (READING, "`refresh_expires_at` is when the login ends ({n} days after"),
        (SECURITY, "up to {n} days of access"),
        (SECURITY, "up to **{n} days** of access"),
        (WEEKLY, "Schwab ends every login {n} days after it happened"),
        (WEEKLY, "every login starts a new {n} days"),
    ),
    # The refresh margin and watch.
    *pins(
        DEFAULT_REFRESH_MARGIN,
        "settings.DEFAULT_REFRESH_MARGIN",
        (CLI_MD, "less than the margin left (default {n} s)"),
        (HOW, "(the `RefreshMarginSeconds` parameter, default {n} s)"),
    ),
    *pins(
        DEFAULT_REFRESH_MARGIN / MINUTE,
        "settings.DEFAULT_REFRESH_MARGIN",
        (HOW, "more than the margin left ({n} minutes by default)"),
    ),
    *pins(
        (DEFAULT_REFRESH_MARGIN / MINUTE, MAX_REFRESH_MARGIN),
        "settings.DEFAULT_REFRESH_MARGIN, MAX_REFRESH_MARGIN",
        (LOCAL, "less than {n} minutes left (`--margin`, in seconds, at most {n})"),
    ),
    *pins(
        WATCH_INTERVAL,
        "watch's --interval default",
        (CLI_MD, "watch [--interval {n}]"),
        (LOCAL, "It checks the file every {n} seconds (`--interval`)"),
    ),
    # Readers.
    *pins(
        DEFAULT_REREAD_MARGIN,
        "reader.DEFAULT_REREAD_MARGIN",
        (HOW, "`TokenReader` re-reads when its cached access token has less than {n} s left"),
    ),
    *pins(
        DEFAULT_REREAD_MARGIN / MINUTE,
        "reader.DEFAULT_REREAD_MARGIN",
        (LOCAL, "from memory while the token has more than {n} minutes left"),
        (READING, "has less than {n} minutes left, so a warm invocation"),
    ),
    # The lease, Schwab's token endpoint and the refresher's timeout.
    *pins(
        LEASE_WAIT_SECONDS,
        "refresh.LEASE_WAIT_SECONDS",
        (HOW, "A writer that finds the lease taken waits (up to {n} seconds)"),
        (HOW, "| waiting for another writer's lease | {n} s |"),
    ),
    *pins(
        (DEFAULT_LEASE_TTL, safety(DEFAULT_LEASE_TTL)),
        "settings.DEFAULT_LEASE_TTL, stores.base.safety",
        (
            HOW,
            "| holding the lease | {n} s (`SCHWAB_TOKENS_LEASE_TTL`); the holder stops calling "
            "Schwab or writing {n} s before",
        ),
    ),
    *pins(
        _oauth().timeout,
        "SchwabOAuth's connect timeout, settings.DEFAULT_HTTP_TIMEOUT",
        (
            HOW,
            "| one try at Schwab's token endpoint | {n} s to connect, {n} s to read "
            "(`SCHWAB_HTTP_TIMEOUT`)",
        ),
    ),
    *pins(
        (DEFAULT_HTTP_RETRIES, _retry().backoff_max, MAX_RETRY_AFTER),
        "settings.DEFAULT_HTTP_RETRIES, SchwabOAuth's Retry",
        (
            HOW,
            "| retries | {n} more tries (`SCHWAB_HTTP_RETRIES`) with jittered backoff up to {n} s, "
            "honouring `Retry-After` up to {n} s",
        ),
    ),
    *pins(
        NOTES_WAIT_SECONDS,
        "stores.secretsmanager.NOTES_WAIT_SECONDS",
        (HOW, "| the notes' wait on Secrets Manager | {n} s |"),
    ),
    *pins(
        (
            REFRESHER["Timeout"],
            LEASE_WAIT_SECONDS,
            DEFAULT_LEASE_TTL,
            NOTES_WAIT_SECONDS,
            REFRESHER["Timeout"] - LEASE_WAIT_SECONDS - DEFAULT_LEASE_TTL - NOTES_WAIT_SECONDS,
        ),
        "the template's RefresherFunction Timeout and the waits it covers",
        (
            HOW,
            "| the refresher Lambda's timeout | {n} s = {n} (waiting) + {n} (holding) "
            "+ {n} (notes) + {n} (the AWS calls around them)",
        ),
    ),
    *pins(
        INVOKE["MaximumRetryAttempts"],
        "the template's MaximumRetryAttempts",
        (HOW, "A failed asynchronous run is retried by Lambda {n}"),
    ),
    *pins(
        INVOKE["MaximumEventAgeInSeconds"] / MINUTE,
        "the template's MaximumEventAgeInSeconds",
        (HOW, "an event older than {n} minutes is dropped"),
    ),
    *pins(
        credentials.CACHE_SECONDS / MINUTE,
        "credentials.CACHE_SECONDS",
        (HOW, "keeps the app credentials in memory for {n} minutes"),
    ),
    # Notices, alarms, status and doctor.
    *pins(
        THRESHOLDS[notify.Kind.EXPIRING_24H] / HOUR,
        "notify's expiring_24h threshold",
        (HOW, "| the login ends within {n} hours | `expiring_24h`"),
    ),
    *pins(
        THRESHOLDS[notify.Kind.EXPIRING_2H] / HOUR,
        "notify's expiring_2h threshold",
        (HOW, "| within {n} hours | `expiring_2h`"),
    ),
    *pins(
        notify.FAILING_AFTER_SECONDS / MINUTE,
        "notify.FAILING_AFTER_SECONDS",
        (HOW, "| every refresh has failed for {n} minutes | `failing`"),
        (EMAILS, "refreshes failing for {n} min*"),
        (EMAILS, "every refresh for {n} minutes failed"),
    ),
    *pins(
        (ERRORS_ALARM["EvaluationPeriods"], ERRORS_ALARM["Period"] / MINUTE),
        "the template's RefresherErrorsAlarm",
        (EMAILS, "the refresher Lambda failed in {n} {n}-minute periods in a row"),
        (EMAILS, "ended in an error in each of the last {n} {n}-minute periods"),
    ),
    *pins(
        SILENCE / MINUTE,
        "the template's RefresherNotRunningAlarm",
        (EMAILS, "the refresher has not run for {n} minutes"),
        (EMAILS, "no invocation of the refresher in the last {n} minutes"),
        (HOW, "no invocation in {n} minutes"),
    ),
    *pins(
        health.REFRESH_WARNING_SECONDS / DAY,
        "health.REFRESH_WARNING_SECONDS",
        (LOCAL, "`healthy` (false from {n} day before the login ends)"),
    ),
    *pins(
        doctor_store.LOGIN_DUE_SECONDS / HOUR,
        "diagnosis.LOGIN_DUE_SECONDS",
        (START, "has time left; a warning within {n} hours"),
    ),
    # The phone login: the link's life and the sign-in's.
    *pins(
        (tickets.DEFAULT_VALID_SECONDS / HOUR, tickets.MAX_VALID_SECONDS / HOUR),
        "tickets.DEFAULT_VALID_SECONDS, MAX_VALID_SECONDS",
        (SECURITY, "expires ({n} hours by default, {n} at most)"),
    ),
    *pins(
        tickets.DEFAULT_VALID_SECONDS / HOUR,
        "tickets.DEFAULT_VALID_SECONDS (the refresher's e-mailed links)",
        (WEEKLY, "carry a fresh link, valid once, for {n} hours"),
        (WEEKLY, "(the link works once, for {n} hours)"),
        # The e-mail's own words, which the library writes out.
        ("layers/schwab_tokens/schwab_tokens/notify.py", "(the link works once, for {n} hours)"),
    ),
    *pins(
        LINK_VALID / HOUR,
        "login-link's --valid default",
        (WEEKLY, "--valid {n}h"),
        (CLI_MD, "[--valid {n}h]"),
    ),
    *pins(
        tickets.MAX_VALID_SECONDS / HOUR,
        "tickets.MAX_VALID_SECONDS",
        (CLI_MD, "valid once, for up to `{n}h`"),
        (WEEKLY, "`--valid` accepts up to `{n}h`"),
    ),
    *pins(
        tickets.SIGN_IN_SECONDS / MINUTE,
        "tickets.SIGN_IN_SECONDS",
        (SECURITY, "accepted only in the browser that opened the link, within {n} minutes"),
        (SECURITY, "after {n} minutes cookie and state are worthless"),
        (WEEKLY, "more than {n} minutes between opening the link and coming back from Schwab"),
    ),
]


@cache
def _text(doc: str) -> str:
    """The document with every run of whitespace as one space (a phrase may wrap)."""
    return " ".join((REPO / doc).read_text().split())


def _pattern(phrase: str) -> re.Pattern[str]:
    parts = " ".join(phrase.split()).split("{n}")
    return re.compile(_NUMBER.join(re.escape(part) for part in parts))


def _number(text: str) -> float:
    return float(_WORDS.get(text, text.replace(",", "")))


def test_the_pins_are_one_per_phrase() -> None:
    assert len({(p.doc, p.phrase) for p in PINS}) == len(PINS)
    for row in PINS:
        assert row.phrase.count("{n}") == len(row.numbers), row.id


@pytest.mark.parametrize("row", PINS, ids=lambda row: row.id)
def test_the_docs_state_the_numbers_the_code_uses(row: Pin) -> None:
    found = [m.groups() for m in _pattern(row.phrase).finditer(_text(row.doc))]
    if not found:
        pytest.fail(
            f"{row.doc} no longer says {row.phrase!r}: if it was reworded, update this row of "
            f"{__name__} (the number comes from {row.source})",
            pytrace=False,
        )
    wanted = ", ".join(f"{n:g}" for n in row.numbers)
    for said in found:
        stated = tuple(_number(n) for n in said)
        assert stated == tuple(float(n) for n in row.numbers), (
            f"{row.doc} says {', '.join(said)} in {row.phrase!r}, but {row.source} makes it "
            f"{wanted}: change the document and the code together"
        )
