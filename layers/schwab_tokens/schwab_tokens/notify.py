"""The refresher's notifications: one message per state change of a token, never two for one.

States, from each run's result: the login ends in less than 24 hours, in less than 2 hours, the
login is over (refresh token dead or expired), refreshes have failed for 30 minutes, and they
work again. What was sent is kept in the store's notes beside the token (``TokenStore.
write_notes``: compare-and-swap, like the token), so concurrent refreshers and Lambda's retries
of a failed run agree on what was already said: the notes are written first, conditionally, and
only the writer that won sends. No AWS here: the message goes to a ``publish`` callable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from . import strictjson
from .errors import LoginReplaced, Outcome, SchwabTokensError, WriteConflict
from .notes import FAILING, LOGIN, SENT, failing, normalized, with_verdict
from .policy import RunResult
from .stores.base import TokenStore
from .token import Token

log = logging.getLogger(__name__)

#: Refreshes must have failed this long before the user hears about it (a blip is not news).
FAILING_AFTER_SECONDS = 30 * 60


class Kind(StrEnum):
    """What a notification is about (the SNS message attribute ``kind``)."""

    EXPIRING_24H = "expiring_24h"
    EXPIRING_2H = "expiring_2h"
    LOGIN_REQUIRED = "login_required"
    FAILING = "failing"
    RECOVERED = "recovered"


#: The kind of ``schwab-tokens alerts test``'s notice: sent on request, never for a token's
#: state, so it is no ``Kind`` (the notes never record it).
TEST: Literal["test"] = "test"


#: The login's notices, in rising order: each is sent at most once per login.
_LOGIN_LEVELS = (Kind.EXPIRING_24H, Kind.EXPIRING_2H, Kind.LOGIN_REQUIRED)
_THRESHOLDS = {Kind.EXPIRING_24H: 24 * 3600, Kind.EXPIRING_2H: 2 * 3600}


#: The SNS message attribute that carries a notice's parts (``Notice.to_json``) to the
#: notifier; e-mail subscribers never see attributes, so their message stays the e-mail.
NOTICE_ATTRIBUTE = "notice"
#: Chat services cut long texts (Pushover at 1024 characters, Discord at 2000): the chat
#: text stays under the smallest, whatever a reason or a link adds.
CHAT_LIMIT = 900
_LINE_LIMIT = 300
_PART_LIMIT = 2000  # a link or a command; longer is not ours


@dataclass(frozen=True)
class Notice:
    """One notification: an e-mail and the parts a chat text is made of.

    ``subject`` and ``message`` are the e-mail; ``line`` (what happened, in one line), ``link``
    (the one-time phone login, if any) and ``command`` (what to run on a computer, if anything)
    are the parts a chat text is made of (``chat``). Built by ``compose``, ``trial_notice`` and
    ``from_json``.
    """

    kind: Kind | Literal["test"]
    token_name: str
    subject: str
    message: str
    line: str = ""
    link: str | None = None
    command: str | None = None

    def chat(self) -> str:
        """The chat text's body (its title is ``subject``), at most ``CHAT_LIMIT`` characters.

        The line, then the link, or the command when there is no link. Never a token: only what
        the e-mail says too.
        """
        action = self.link or self.command
        body = self.line if not action else f"{self.line}\n{action}" if self.line else action
        return body if len(body) <= CHAT_LIMIT else body[: CHAT_LIMIT - 3] + "..."

    def attributes(self) -> dict[str, str]:
        """The SNS message attributes, name to string value.

        ``kind`` and ``token`` (a subscription can filter on them) and the chat's parts
        (``NOTICE_ATTRIBUTE``, for the notifier).
        """
        return {
            "kind": str(self.kind),
            "token": self.token_name,
            NOTICE_ATTRIBUTE: self.to_json(),
        }

    def to_json(self) -> str:
        """The parts a chat needs, as JSON (the SNS attribute ``NOTICE_ATTRIBUTE``)."""
        parts = {
            "kind": str(self.kind),
            "token": self.token_name,
            "subject": self.subject,
            "line": self.line,
            "link": self.link,
            "command": self.command,
        }
        return strictjson.dumps({k: v for k, v in parts.items() if v is not None}).decode()

    @classmethod
    def from_json(cls, text: str) -> Notice:
        """The notice ``to_json`` wrote, its ``message`` "" (the e-mail body is not carried).

        The text arrives from outside: anything else (not JSON, an unknown kind, a part that is
        not a short string) raises ``ValueError``, whose message never quotes the text.
        """
        if len(text) > 4 * _PART_LIMIT:
            raise ValueError("the notice is too long to be ours")
        try:
            data = strictjson.loads(text)
        except strictjson.NotJSON as exc:
            raise ValueError(f"the notice is not JSON ({exc.reason})") from None
        if not isinstance(data, dict):
            raise ValueError("the notice is not a JSON object")
        kind: Kind | Literal["test"]
        if data.get("kind") == TEST:
            kind = TEST
        else:
            try:
                kind = Kind(str(data.get("kind")))
            except ValueError:
                raise ValueError("the notice has no known kind") from None
        parts: dict[str, str | None] = {}
        for name in ("token", "subject", "line", "link", "command"):
            value = data.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > _PART_LIMIT):
                raise ValueError(f"the notice's {name} is not a short text")
            parts[name] = value
        if not parts["subject"]:
            raise ValueError("the notice has no subject")
        return cls(
            kind,
            parts["token"] or "",
            str(parts["subject"]),
            "",
            parts["line"] or "",
            parts["link"] or None,
            parts["command"] or None,
        )


def login_level(result: RunResult, now: float) -> Kind | None:
    """How close the token's login is to its end at ``now``, from this run's result.

    Returns one of the login's notice kinds, or None when it is far (or there is no token).
    Raises nothing.
    """
    token = result.token
    if token is None:
        return None  # never logged in: nothing to warn about, the user knows
    if result.outcome == Outcome.REAUTH_REQUIRED:
        return Kind.LOGIN_REQUIRED
    left = token.refresh_seconds_left(now)
    if left <= 0:
        return Kind.LOGIN_REQUIRED
    for kind in (Kind.EXPIRING_2H, Kind.EXPIRING_24H):
        if left < _THRESHOLDS[kind]:
            return kind
    return None


def next_notes(
    notes: dict[str, Any], result: RunResult, now: float
) -> tuple[dict[str, Any], Kind | None]:
    """The notes after this run, and the kind of notification to send (None for none).

    At most one notification per run. Raises nothing.

    Pure: the same notes and result always give the same answer, which is what makes a
    compare-and-swap of the notes a sufficient guard against sending twice. The run's verdict on
    the login (``notes.with_verdict``) is part of it.
    """
    token = result.token
    new = normalized(notes)
    noted_login = new.get(LOGIN)
    if (
        token is not None
        and isinstance(noted_login, int | float)
        and noted_login > token.creation_timestamp
    ):
        # A login landed after this run read the token: the notes are that login's (its
        # account, its warnings), and nothing this run saw is news about it.
        return notes, None
    if token is not None:
        if noted_login != token.creation_timestamp:
            # A new login: its notices start afresh; the account fingerprint belongs to the old one.
            new = {LOGIN: token.creation_timestamp}
        new = dict(with_verdict(new, token, result.outcome))
    else:
        new = dict(new)
    level = login_level(result, now)
    sent = new.get(SENT)
    if level is not None and _rank(level) > _rank(sent):
        new[SENT] = str(level)
        return new, level
    noted_failing = failing(new)
    if result.outcome == Outcome.FAILED:
        if noted_failing is None:
            new[FAILING] = [int(now), False]
            return new, None
        since, said = noted_failing
        if not said and now - since >= FAILING_AFTER_SECONDS:
            new[FAILING] = [int(since), True]
            return new, Kind.FAILING
        return new, None
    if result.outcome == Outcome.REFRESHED and sent == Kind.LOGIN_REQUIRED:
        # "Login over" was wrong after all (the same login refreshed again): take the mark back,
        # so the real end of this login is announced again, and say it works. Only a refresh
        # proves it: a token found fresh says nothing about its login.
        new.pop(SENT)
        new.pop(FAILING, None)
        return new, Kind.RECOVERED
    if result.ok and FAILING in new:
        new.pop(FAILING)
        return new, Kind.RECOVERED if noted_failing is not None and noted_failing[1] else None
    return new, None


def _rank(kind: object) -> int:
    for rank, level in enumerate(_LOGIN_LEVELS, start=1):
        if kind == level:
            return rank
    return 0


def notify(
    store: TokenStore,
    name: str,
    result: RunResult,
    publish: Callable[[Notice], None],
    login_link: Callable[[Token], str | None] | None = None,
    now: float | None = None,
    login_command: str | None = None,
) -> Kind | None:
    """Update the notes for this run and send what changed; returns the kind sent, or None.

    The notes are written before the message is sent: of two runs that see the same change,
    only the one whose conditional write wins sends (the other returns None). If ``publish``
    raises a ``SchwabTokensError``, the notes are put back, so the next run tries again, and
    the error is raised; so is the store's error when the notes cannot be read or written.
    ``login_command`` is the command the e-mail tells the user to run (complete: it must work
    as printed on a laptop with only AWS credentials).
    """
    now = time.time() if now is None else now
    notes, version = store.read_notes()
    new, kind = next_notes(notes, result, now)
    if new == notes:
        return None
    if kind is Kind.LOGIN_REQUIRED and _newer_login_stored(store, result):
        # The refresh token died because a login (the phone's, a laptop's) replaced it, and
        # that login is stored by now: "login over" would be stale news about the old one.
        return None
    try:
        written = store.write_notes(new, version)
    except WriteConflict:
        log.info("notes of %s changed meanwhile; another run reported this change", name)
        return None
    if kind is None:
        return None
    link = login_link(result.token) if login_link and result.token is not None else None
    notice = compose(kind, name, store.url, result, now, link, login_command)
    try:
        publish(notice)
    except SchwabTokensError:
        try:
            store.write_notes(notes, written)
        except SchwabTokensError as exc:
            log.warning("could not put back the notes of %s (%s)", name, exc)
        raise
    return kind


def _newer_login_stored(store: TokenStore, result: RunResult) -> bool:
    if result.token is None:
        return False
    try:
        current = store.read().token
    except SchwabTokensError:
        return False
    return current.creation_timestamp > result.token.creation_timestamp


# -- the messages ----------------------------------------------------------------------------------
def compose(
    kind: Kind,
    name: str,
    url: str,
    result: RunResult,
    now: float,
    link: str | None,
    cli: str | None = None,
) -> Notice:
    """The ``Notice`` of ``kind`` for the token ``name`` in the store ``url``; raises nothing.

    An e-mail whose subject is enough on a lock screen and whose body says what happened, when
    the bots stop and what to do, and the same in chat's parts. ``link`` is a one-time phone
    login, ``cli`` the login command to print (default: ``schwab-tokens login --store URL``).
    """
    moment = _Moment(
        name,
        _short(name),
        url,
        result,
        now,
        result.token.refresh_expires_at if result.token is not None else now,
        result.token.access_expires_at if result.token is not None else now,
        link,
        cli or f"schwab-tokens login --store {url}",
    )
    if kind is Kind.EXPIRING_24H or kind is Kind.EXPIRING_2H:
        return _expiring_notice(kind, moment)
    if kind is Kind.LOGIN_REQUIRED:
        return _login_over_notice(moment)
    if kind is Kind.FAILING:
        return _failing_notice(moment)
    return _recovered_notice(moment)


def trial_notice(name: str, sender: str) -> Notice:
    """The ``Notice`` that ``schwab-tokens alerts test`` sends; raises nothing.

    It says where it came from and asks nothing.
    """
    line = f"A test from {sender}: your alerts reach you. Nothing to do."
    return Notice(TEST, name, f"Schwab token '{_short(name)}': test alert", f"{line}\n", line)


@dataclass(frozen=True)
class _Moment:
    """What every message draws on: the token (``short`` is its name for a subject), when its
    login and its access token end, and how to log in again (``link``, ``cli``)."""

    name: str
    short: str
    url: str
    result: RunResult
    now: float
    login_ends: float
    access_ends: float
    link: str | None
    cli: str

    @property
    def how(self) -> str:
        """How to log in again: the phone's link first, when there is one."""
        if self.link:
            return (
                f"Log in again now from your phone: {self.link}\n"
                "(the link works once, for 24 hours)\n\n"
                f"Or, on your computer: {self.cli}"
            )
        return f"Log in again on your computer: {self.cli}"


def _short(name: str) -> str:
    """The token's name for a subject. SNS takes a subject under 100 characters (plain ASCII
    here, as older SNS docs require): a long name is shortened, never the action."""
    return name if len(name) <= 32 else name[:29] + "..."


def _expiring_notice(kind: Kind, moment: _Moment) -> Notice:
    left, ends = _left(moment.login_ends - moment.now), _when(moment.login_ends)
    subject = f"Schwab login '{moment.short}' ends in {left}: log in again"
    body = (
        f"Your Schwab login for the token '{moment.name}' ends at {ends} (in {left}). Schwab "
        "lets a login last 7 days; after that the refresh token is dead and your bots stop "
        f"getting access tokens.\n\n{moment.how}"
    )
    line = f"The login ends at {ends}; then your bots get no access token."
    return Notice(kind, moment.name, subject, body, line, moment.link, moment.cli)


@dataclass(frozen=True)
class _Ending:
    """Why a login ended, as each part of the "login over" notice says it."""

    subject: str  # after "Schwab login '<name>' "
    why: str
    after: str  # after how to log in again
    line: str


_REPLACED = _Ending(
    "was replaced by another login: log in again",
    "Schwab refused its refresh token although the login had days left: another login to this "
    "app replaced this one. Schwab keeps one login per app, so a login with another tool "
    "(schwab-py's easy_client, Schwabdev, a second schwab-tokens login) ends the older one",
    "\n\nLet only schwab-tokens log in to this app; your other programs can read its token "
    "(TokenReader, `schwab-tokens export`).",
    "Another login to this app replaced it (Schwab keeps one login per app); ",
)
_DEAD = _Ending(
    "is over: your bots have stopped",
    "the refresh token is dead or expired",
    "",
    "The refresh token is dead or expired; ",
)


def _login_over_notice(moment: _Moment) -> Notice:
    ending = _REPLACED if isinstance(moment.result.error, LoginReplaced) else _DEAD
    if moment.access_ends > moment.now:
        last = f"the last access token works until {_when(moment.access_ends)}, then"
    else:
        last = f"the last access token ran out at {_when(moment.access_ends)}, so"
    body = (
        f"The Schwab login for the token '{moment.name}' has ended: {ending.why}; {last} your "
        f"bots get no working token until you log in again.\n\n{moment.how}{ending.after}"
    )
    line = f"{ending.line}{last} nothing works until you log in again."
    subject = f"Schwab login '{moment.short}' {ending.subject}"
    return Notice(Kind.LOGIN_REQUIRED, moment.name, subject, body, line, moment.link, moment.cli)


def _failing_notice(moment: _Moment) -> Notice:
    if moment.result.token is None:
        stop = "the stored token cannot be read, so your bots get none"
    elif moment.access_ends > moment.now:
        stop = (
            f"your bots stop at {_when(moment.access_ends)} when the current access token runs out"
        )
    else:
        stop = f"your bots have had no valid access token since {_when(moment.access_ends)}"
    reason = str(moment.result.error) if moment.result.error is not None else "unknown"
    status = f"schwab-tokens status --store {moment.url}"
    body = (
        f"Refreshing the token '{moment.name}' has failed for 30 minutes; {stop}. The refresher "
        f"keeps trying every few minutes.\n\nLast error: {reason}\n\n"
        "Most often Schwab is down or the app key or secret changed. Check "
        f"`{status}` and the refresher's log."
    )
    subject = f"Schwab token '{moment.short}': refreshes failing for 30 min"
    line = _one_line(f"{stop[0].upper()}{stop[1:]}. Last error: {reason}")
    return Notice(Kind.FAILING, moment.name, subject, body, line, None, status)


def _recovered_notice(moment: _Moment) -> Notice:
    until = _when(moment.access_ends)
    subject = f"Schwab token '{moment.short}' works again"
    body = (
        f"Refreshing the token '{moment.name}' works again; the access token is valid until "
        f"{until}. Nothing to do."
    )
    line = f"The access token is valid until {until}. Nothing to do."
    return Notice(Kind.RECOVERED, moment.name, subject, body, line, None, None)


def _one_line(text: str) -> str:
    """``text`` as one short line (an error's text can run over lines)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _LINE_LIMIT else flat[: _LINE_LIMIT - 3] + "..."


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h" if hours else f"{max(1, rest // 60)} min"


def _when(epoch: float) -> str:
    return time.strftime("%a %d %b %H:%M UTC", time.gmtime(epoch))
